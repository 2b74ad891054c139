"""R-peak detection against reference annotations: ours vs neurokit2 and wfdb xqrs, one run.

Run: taskset -c 0 .venv/bin/python benchmarks/rpeaks.py [--repeats N] [--leads all]
Prints a markdown table (Se, PPV, FP/FN, speed as x real time, median of N runs on one
thread) for every annotated record we have: the MIT-BIH Arrhythmia DS1 records of
../shared/ecg-train/mitdb and mitdb 100, SVDB 800 and the CPSC 2021 records of
../shared/ecg-real; then the aggregates per database, the slowest record and the anchors.
Scoring: wfdb.processing.compare_annotations, 150 ms window, first channel, whole records;
beat symbols only (labels_atr.BEAT_SYMBOLS); ventricular flutter episodes (between the `[`
and `]` marks, which carry no beat labels) are left out for every detector, as in the
standard evaluations (ANSI/AAMI EC57).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"  # speed is quoted per core

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import wfdb  # noqa: E402
from wfdb.processing import compare_annotations  # noqa: E402

from ecgmoe_cli.io.labels.atr import BEAT_SYMBOLS  # noqa: E402
from ecgmoe_cli.signal.rpeaks import detect_rpeaks  # noqa: E402

REAL = Path(os.environ.get("ECGMOE_REAL_DATA",
                          Path(__file__).resolve().parents[2] / "shared" / "ecg-real"))
TRAIN = Path(os.environ.get("ECGMOE_TRAIN_DATA", REAL.parent / "ecg-train"))
# (database, record path, annotation extension); 03700181 has machine (gqrs) annotations only.
ANNOTATED = [("mitdb", TRAIN / "mitdb" / p.stem, "atr")
             for p in sorted((TRAIN / "mitdb").glob("*.atr"))] + [
    ("mitdb", REAL / "wfdb-sample/100", "atr"), ("svdb", REAL / "svdb/800", "atr")] + [
    ("cpsc2021", REAL / "cpsc2021" / p.stem, "atr")
    for p in sorted((REAL / "cpsc2021").glob("*.atr"))] + [
    ("mimic (gqrs ref)", REAL / "wfdb-sample/03700181", "gqrsh")]
UNANNOTATED = [REAL / "wfdb-sample/v102s", REAL / "wfdb-sample/a103l"]  # NaN samples, no reference
ECG_NAMES = {"ECG", "MLII", "V5", "I", "II", "V", "MCL1", "V1", "V2", "V4"}
# Published and earlier figures, aggregate Se / PPV % on MIT-BIH (all 48 records unless said).
ANCHORS = [
    ("Pan & Tompkins 1985 (IEEE TBME 32:230)", "99.76 / 99.56", "48 records, 2 channels seen"),
    ("Hamilton & Tompkins 1986 (IEEE TBME 33:1157)", "99.69 / 99.77", "48 records"),
    ("ecgmoe before issue 23, measured in the issue", "99.46 / 99.37", "48 records, first channel"),
    ("neurokit2 default, measured in the issue", "99.39 / 99.53", "48 records, first channel"),
    ("wfdb xqrs, measured in the issue", "99.20 / 99.30", "48 records, first channel"),
]


def load(path: Path, all_leads: bool) -> tuple[np.ndarray, float]:
    """ECG channels at their own rate (MIMIC stores MCL1 at 4 samples per frame)."""
    rec = wfdb.rdrecord(str(path), smooth_frames=False)
    spf = rec.samps_per_frame
    fs = float(rec.fs * spf[0])
    rows = [i for i, s in enumerate(rec.sig_name) if s in ECG_NAMES and spf[i] == spf[0]]
    rows = rows if all_leads else rows[:1]
    return np.vstack([rec.e_p_signal[i] for i in rows]), fs


def reference(path: Path, ext: str, fs: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference beat samples and a mask (n,) of the samples left out (flutter episodes)."""
    ann = wfdb.rdann(str(path), ext)
    scale = fs / float(ann.fs) if ann.fs else 1.0
    at = np.round(ann.sample * scale).astype(np.int64)
    out = np.zeros(n, dtype=bool)
    start = None
    for s, sym in zip(at, ann.symbol):
        if sym == "[":
            start = s
        elif sym == "]" and start is not None:
            out[start:s + 1], start = True, None
    if start is not None:
        out[start:] = True
    beats = at[np.array([s in BEAT_SYMBOLS for s in ann.symbol], dtype=bool)]
    return beats[~out[np.clip(beats, 0, n - 1)]], out


def ours(x: np.ndarray, fs: float) -> np.ndarray:
    return detect_rpeaks(x, fs)


def neurokit(x: np.ndarray, fs: float) -> np.ndarray:
    import neurokit2 as nk

    _, info = nk.ecg_peaks(np.nan_to_num(x[0]), sampling_rate=int(round(fs)))
    return np.asarray(info["ECG_R_Peaks"], dtype=np.int64)


def xqrs(x: np.ndarray, fs: float) -> np.ndarray:
    from wfdb.processing import xqrs_detect

    return np.asarray(xqrs_detect(np.nan_to_num(x[0]), fs, verbose=False), dtype=np.int64)


def timed(fn: Callable[[np.ndarray, float], np.ndarray], x: np.ndarray, fs: float, repeats: int):
    times, out = [], np.zeros(0, dtype=np.int64)
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(x, fs)
        times.append(time.perf_counter() - t0)
    return out, float(np.median(times))


def pct(a: int, b: int) -> str:
    return f"{100 * a / max(a + b, 1):.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7, help="timed runs of our detector (median)")
    ap.add_argument("--other-repeats", type=int, default=1, help="timed runs of neurokit2 / xqrs")
    ap.add_argument("--leads", choices=["first", "all"], default="first",
                    help="our detector on the first channel (the bar) or on every ECG channel")
    ap.add_argument("--only-ours", action="store_true", help="skip neurokit2 and xqrs")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    detectors = [("ecgmoe", ours, args.repeats)]
    if not args.only_ours:
        detectors += [("neurokit2", neurokit, args.other_repeats),
                      ("xqrs", xqrs, args.other_repeats)]
    names = [d[0] for d in detectors]

    print(f"R-peaks, {args.leads} channel(s) for ecgmoe, first channel for others; window 150 ms; "
          "Se / PPV %; speed = signal seconds / detector seconds, median of runs, 1 thread\n")
    columns = " | ".join(f"{n} Se / PPV (FP, FN)" for n in names)
    print(f"| db | record | fs | beats | {columns} |")
    print("|---|---|---|---|" + "---|" * len(names))
    totals: dict[tuple[str, str], np.ndarray] = {}
    speed: dict[str, list[tuple[float, float, str]]] = {n: [] for n in names}
    for db, path, ext in ANNOTATED:
        x, fs = load(path, args.leads == "all")
        ref, out = reference(path, ext, fs, x.shape[1])
        cells = []
        for label, fn, reps in detectors:
            test, sec = timed(fn, x if label == "ecgmoe" else x[:1], fs, reps)
            test = test[~out[np.clip(test, 0, x.shape[1] - 1)]]
            c = compare_annotations(ref, test, int(0.150 * fs))
            totals.setdefault((db, label), np.zeros(3, np.int64))[:] += (c.tp, c.fp, c.fn)
            speed[label].append((x.shape[1] / fs, sec, path.name))
            cells.append(f"{pct(c.tp, c.fn)} / {pct(c.tp, c.fp)} ({c.fp}, {c.fn})")
        left = f" ({out.mean():.1%} flutter left out)" if out.any() else ""
        print(f"| {db} | {path.name}{left} | {fs:g} | {ref.size} | " + " | ".join(cells) + " |")

    print("\n| database | detector | records | beats | Se % | PPV % | FP | FN |")
    print("|---|---|---|---|---|---|---|---|")
    for (db, label), (tp, fp, fn) in totals.items():
        n = sum(1 for d, _, _ in ANNOTATED if d == db)
        print(f"| {db} | {label} | {n} | {tp + fn} | {pct(tp, fn)} | {pct(tp, fp)} | {fp} | {fn} |")
    print("\n| detector | x real time, all records | slowest record |")
    print("|---|---|---|")
    for label, rows in speed.items():
        total = sum(d for d, _, _ in rows) / sum(s for _, s, _ in rows)
        dur, sec, name = min(rows, key=lambda r: r[0] / r[1])
        print(f"| {label} | {total:,.0f} | {dur / sec:,.0f} ({name}) |")
    print("\nAnchors (aggregate Se / PPV % on MIT-BIH):\n")
    for who, figures, note in ANCHORS:
        print(f"- {who}: {figures} ({note})")

    print("\nRecords with NaN samples and no beat reference (agreement with xqrs on NaN -> 0):\n")
    print("| record | fs | NaN | ecgmoe beats | xqrs beats | matched | ecgmoe x real time |")
    print("|---|---|---|---|---|---|---|")
    for path in UNANNOTATED:
        x, fs = load(path, args.leads == "all")
        test, sec = timed(ours, x, fs, args.repeats)
        other = xqrs(x[:1], fs)
        c = compare_annotations(other, test, int(0.150 * fs))
        print(f"| {path.name} | {fs:g} | {int(np.isnan(x).sum())} | {test.size} | {other.size} | "
              f"{c.tp} | {x.shape[1] / fs / sec:,.0f} |")


if __name__ == "__main__":
    main()
