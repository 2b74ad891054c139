"""Does the signal-quality index (ecgmoe_cli/signal/quality.py) tell noise from ECG?

    .venv/bin/python benchmarks/quality_check.py --cinc ../shared/ecg-train/cinc2017 \
        --real ../shared/ecg-real [--plots DIR]

Every record goes through the project's own path (read_record + prepare_record, the shipped
spec), so the figures are those `ecgmoe predict` writes in the `quality` column.
- CinC 2017 (single lead, 300 Hz, read with the lead map ECG=I): AUROC of 1 - quality for
  the `~` records (too noisy to read) against the rest, and the share of each flagged at the
  shipped threshold, on two halves split by a hash of the record name: half A is where the
  threshold and the ramps were chosen, half B is reported untouched. The threshold that
  maximises Youden's J on half A is printed next to the shipped one.
- 20 noise-only records (Gaussian noise, 12 leads, 500 Hz, 10 s; 0.02-2 mV) and 20 heavily
  corrupted copies of real 12-lead records (strong noise, motion-like artefact, clipping, or
  all three): all should be flagged (a record with no usable lead at all is an error row,
  counted as flagged: predict writes no prediction for it).
- The real records under --real: the share flagged, each flagged one listed (with --plots,
  drawn by `ecgmoe plot`, window by window where windows are flagged).
Noise and corrupted records are written to a temporary folder; nothing is copied.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.records.read import read_record
from ecgmoe_cli.pipeline.prepare import Prepared, prepare_record
from ecgmoe_cli.signal.quality import LOW_QUALITY
from ecgmoe_cli.signal.spec import PreprocessSpec
from ecgmoe_cli.simulate.tree import write_wfdb
from ecgmoe_cli.training.metrics import auroc

SPEC = PreprocessSpec()


def half(name: str) -> str:
    """'A' (choose) or 'B' (report), by the first byte of the name's SHA-1."""
    return "A" if hashlib.sha1(name.encode()).digest()[0] % 2 == 0 else "B"


def quality_of(path: Path, lead_map: dict[str, str] | None = None) -> tuple[float, Prepared | None]:
    """The record's quality (0 when prepare refuses it: no usable signal) and its Prepared."""
    try:
        p = prepare_record(path, SPEC, lead_map=lead_map)
    except EcgMoeError:
        return 0.0, None
    return p.quality, p


def youden_threshold(noisy: np.ndarray, q: np.ndarray) -> float:
    """The quality threshold (flag under it) with the largest TPR - FPR."""
    cuts = np.unique(q)
    best, thr = -1.0, LOW_QUALITY
    for c in cuts:
        flag = q < c
        j = flag[noisy].mean() - flag[~noisy].mean()
        if j > best:
            best, thr = j, float(c)
    return thr


def cinc(root: Path) -> None:
    rows = list(csv.reader((root / "REFERENCE.csv").open()))
    names = [r[0] for r in rows]
    noisy = np.array([r[1] == "~" for r in rows])
    q = np.array([quality_of(root / f"{n}.hea", {"ECG": "I"})[0] for n in names])
    halves = np.array([half(n) for n in names])
    print(f"CinC 2017: {len(names)} records, {noisy.sum()} '~'; shipped threshold "
          f"{LOW_QUALITY:g} (flag when quality < it)")
    for h in ("A", "B"):
        m = halves == h
        flag = q[m] < LOW_QUALITY
        print(f"  half {h} ({'choose' if h == 'A' else 'report'}): {m.sum()} records, "
              f"{noisy[m].sum()} '~'; AUROC(1 - quality) {auroc(noisy[m], 1 - q[m]):.3f}; "
              f"flagged: '~' {flag[noisy[m]].mean():.1%}, rest {flag[~noisy[m]].mean():.1%}")
    a = halves == "A"
    print(f"  Youden-best threshold on half A: {youden_threshold(noisy[a], q[a]):.3f}")
    print(f"  all: AUROC {auroc(noisy, 1 - q):.3f}; quality median '~' "
          f"{np.median(q[noisy]):.3f}, rest {np.median(q[~noisy]):.3f}")


def corrupt(x: np.ndarray, fs: float, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A heavily corrupted copy of (leads, n) mV: noise, motion, clip, or all three."""
    n = x.shape[1]
    y = x.astype(np.float64).copy()
    scale = np.std(x, axis=1, keepdims=True) + 1e-3
    t = np.arange(n) / fs
    if kind in ("noise", "all"):
        y += rng.normal(0, 1, x.shape) * scale * rng.uniform(1.5, 3.0)
    if kind in ("motion", "all"):  # 0.5-8 Hz swings a few mV tall, in bursts (electrode motion)
        for _ in range(12):
            f = rng.uniform(0.5, 8.0)
            burst = np.exp(-((t - rng.uniform(0, t[-1])) / rng.uniform(0.3, 1.5)) ** 2)
            y += (rng.uniform(1.0, 4.0) * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3)) * burst
                  * rng.normal(1, 0.3, (x.shape[0], 1)))
        y += np.cumsum(rng.normal(0, 0.05, x.shape), axis=1)  # wander
    if kind in ("clip", "all"):
        lim = np.quantile(np.abs(y), 0.85, axis=1, keepdims=True)
        y = np.clip(y, -lim, lim)
    return y


def synthetic(real: Path, tmp: Path) -> None:
    rng = np.random.default_rng(0)
    noise_q = []
    for i in range(20):
        base = tmp / f"noise{i:02d}"
        write_wfdb(base, rng.normal(0, 0.02 * 100 ** (i / 19), (12, 5000)), 500.0, [])
        noise_q.append(quality_of(base.with_suffix(".hea"))[0])
    kinds = ("noise", "motion", "clip", "all")
    sources = sorted(real.glob("cinc2021/*.hea"))[:20]  # 12-lead, 500 Hz, 10 s
    bad_q = []
    for i, src in enumerate(sources):
        rec = read_record(src)
        kind = kinds[i % len(kinds)]
        base = tmp / f"{src.stem}_{kind}"
        write_wfdb(base, corrupt(rec.signal, rec.fs, kind, rng), rec.fs, [])
        bad_q.append((base.name, quality_of(base.with_suffix(".hea"))[0]))
    nq = np.array(noise_q)
    print(f"noise-only: {int((nq < LOW_QUALITY).sum())}/20 flagged; quality max {nq.max():.3f}")
    cq = np.array([q for _, q in bad_q])
    print(f"corrupted real: {int((cq < LOW_QUALITY).sum())}/20 flagged; quality max "
          f"{cq.max():.3f}; " + ", ".join(f"{n} {q:.2f}" for n, q in bad_q))


def real_records(real: Path, plots: Path | None) -> None:
    files = sorted(real.rglob("*.hea"))
    flagged, windows, n_windows, n_low = [], [], 0, 0
    for f in files:
        q, p = quality_of(f)
        name = str(f.relative_to(real).with_suffix(""))
        wq = np.zeros(1) if p is None else p.window_quality
        low = np.flatnonzero(wq < LOW_QUALITY).tolist()
        n_windows, n_low = n_windows + wq.size, n_low + len(low)
        if q < LOW_QUALITY:
            flagged.append(f"{name} ({q:.2f})")
        if low:
            windows.append(f"{name}: {len(low)}/{wq.size} windows {low[:6]}")
        if plots is not None and low:
            plots.mkdir(parents=True, exist_ok=True)
            for w in low[:2]:
                out = plots / f"{name.replace('/', '_')}_w{w}.png"
                subprocess.run([sys.executable, "-m", "ecgmoe_cli", "plot", str(f), "-o", str(out),
                                "--window", str(w), "--dpi", "80"], check=True,
                               capture_output=True)
    print(f"real records: {len(flagged)}/{len(files)} flagged: {', '.join(flagged) or 'none'}; "
          f"windows flagged: {n_low}/{n_windows}, in {len(windows)} records:")
    print("    " + "\n    ".join(windows or ["none"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cinc", type=Path, required=True, help="CinC 2017 training folder")
    ap.add_argument("--real", type=Path, required=True, help="shared/ecg-real")
    ap.add_argument("--plots", type=Path, help="draw each flagged real record here")
    args = ap.parse_args()
    cinc(args.cinc)
    with tempfile.TemporaryDirectory() as tmp:
        synthetic(args.real, Path(tmp))
    real_records(args.real, args.plots)


if __name__ == "__main__":
    main()
