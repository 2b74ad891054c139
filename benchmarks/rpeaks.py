"""R-peak detection against reference annotations: ours vs neurokit2 and wfdb xqrs.

Run: .venv/bin/python benchmarks/rpeaks.py [--repeats N] [--leads all]
Prints a markdown table (Se, PPV, TP/FP/FN, speed as x real time, median of N runs on one
thread) for every annotated real record in ../shared/ecg-real, scored with
wfdb.processing.compare_annotations at a 150 ms window on the first channel.
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

from ecgmoe_cli.signal.beats import detect_rpeaks  # noqa: E402

REAL = Path(os.environ.get("ECGMOE_REAL_DATA", Path(__file__).resolve().parents[2] / "shared" / "ecg-real"))
BEAT_SYMBOLS = set("NLRBAaJSVrFejnE/fQ?")  # beats only: rhythm, noise and comment marks are not
# (record, annotation extension); 03700181 has machine (gqrs) annotations only: a weaker reference.
ANNOTATED = [("wfdb-sample/100", "atr"), ("svdb/800", "atr")] + [
    (f"cpsc2021/{p.stem}", "atr") for p in sorted((REAL / "cpsc2021").glob("*.atr"))
] + [("wfdb-sample/03700181", "gqrsh")]
UNANNOTATED = ["wfdb-sample/v102s", "wfdb-sample/a103l"]  # NaN samples, no beat reference
ECG_NAMES = {"ECG", "MLII", "V5", "I", "II", "V", "MCL1"}


def load(name: str, all_leads: bool) -> tuple[np.ndarray, float]:
    """ECG channels at their own rate (MIMIC stores MCL1 at 4 samples per frame)."""
    rec = wfdb.rdrecord(str(REAL / name), smooth_frames=False)
    spf = rec.samps_per_frame
    fs = float(rec.fs * spf[0])
    rows = [i for i, s in enumerate(rec.sig_name) if s in ECG_NAMES and spf[i] == spf[0]]
    rows = rows if all_leads else rows[:1]
    return np.vstack([rec.e_p_signal[i] for i in rows]), fs


def reference(name: str, ext: str, fs: float) -> np.ndarray:
    ann = wfdb.rdann(str(REAL / name), ext)
    keep = np.array([s in BEAT_SYMBOLS for s in ann.symbol], dtype=bool)
    scale = fs / float(ann.fs) if ann.fs else 1.0
    return np.round(ann.sample[keep] * scale).astype(np.int64)


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7, help="timed runs of our detector (median)")
    ap.add_argument("--other-repeats", type=int, default=3, help="timed runs of neurokit2 / xqrs")
    ap.add_argument("--leads", choices=["first", "all"], default="first",
                    help="our detector on the first channel (the bar) or on every ECG channel")
    ap.add_argument("--only-ours", action="store_true", help="skip neurokit2 and xqrs")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    detectors = [("ecgmoe", ours, args.repeats)]
    if not args.only_ours:
        detectors += [("neurokit2", neurokit, args.other_repeats), ("xqrs", xqrs, args.other_repeats)]

    print(f"R-peaks, {args.leads} channel(s) for ecgmoe, first channel for others; window 150 ms; "
          "speed = signal seconds / detector seconds, median of runs, 1 thread\n")
    print("| record | fs | beats | detector | Se % | PPV % | TP | FP | FN | x real time |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, ext in ANNOTATED:
        x, fs = load(name, args.leads == "all")
        ref = reference(name, ext, fs)
        dur = x.shape[1] / fs
        for label, fn, reps in detectors:
            test, sec = timed(fn, x if label == "ecgmoe" else x[:1], fs, reps)
            c = compare_annotations(ref, test, int(0.150 * fs))
            se = 100 * c.tp / max(c.tp + c.fn, 1)
            ppv = 100 * c.tp / max(c.tp + c.fp, 1)
            print(f"| {name}{' (' + ext + ')' if ext != 'atr' else ''} | {fs:g} | {ref.size} | {label} | "
                  f"{se:.2f} | {ppv:.2f} | {c.tp} | {c.fp} | {c.fn} | {dur / sec:,.0f} |")
    print("\nRecords with NaN samples and no beat reference (agreement with xqrs on NaN -> 0):\n")
    print("| record | fs | NaN | ecgmoe beats | xqrs beats | matched | ecgmoe x real time |")
    print("|---|---|---|---|---|---|---|")
    for name in UNANNOTATED:
        x, fs = load(name, args.leads == "all")
        test, sec = timed(ours, x, fs, args.repeats)
        other = xqrs(x[:1], fs)
        c = compare_annotations(other, test, int(0.150 * fs))
        print(f"| {name} | {fs:g} | {int(np.isnan(x).sum())} | {test.size} | {other.size} | {c.tp} | "
              f"{x.shape[1] / fs / sec:,.0f} |")


if __name__ == "__main__":
    main()
