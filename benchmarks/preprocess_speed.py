"""Throughput of `ecgmoe preprocess` on 10 s, 12-lead, 500 Hz WFDB records (format 16).

    .venv/bin/python benchmarks/preprocess_speed.py [--n 1000] [--workers 2] [--repeats 3]

Writes N synthetic records (Gaussian P-QRS-T beats at a random rate, per-lead gains, noise and
baseline wander) with `wfdb.wrsamp` into a temporary folder, then times the whole CLI command
(`ecgmoe preprocess DIR -o DS --workers W --quiet --overwrite`, a fresh process each time, so
start-up, discovery, reading, cleaning, R-peaks and writing are all counted). Prints the median
of the repeats in records/s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def synthetic_beats(rng: np.random.Generator, fs: float, n: int) -> np.ndarray:
    """(12, n) mV: P, QRS and T waves as Gaussians around each beat, plus noise and wander."""
    t = np.arange(n) / fs
    rr = 60.0 / rng.uniform(50, 110)
    beats = np.arange(rng.uniform(0, rr), n / fs, rr)
    shape = np.zeros(n)
    for b in beats:
        for off, width, amp in ((-0.16, 0.025, 0.12), (-0.02, 0.01, -0.1), (0.0, 0.012, 1.0),
                                (0.025, 0.01, -0.25), (0.25, 0.05, 0.3)):
            shape += amp * np.exp(-0.5 * ((t - b - off) / width) ** 2)
    gains = rng.uniform(-1.2, 1.5, size=(12, 1))
    wander = 0.1 * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * t + rng.uniform(0, 6.3))
    return gains * shape[None] + wander[None] + rng.normal(0, 0.02, size=(12, n))


def write_records(folder: Path, n: int, seed: int = 0) -> None:
    import wfdb

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    fs = 500
    for i in range(n):
        sig = synthetic_beats(rng, fs, 10 * fs)
        wfdb.wrsamp(f"r{i:05d}", fs=fs, units=["mV"] * 12, sig_name=LEADS,
                    p_signal=sig.T, fmt=["16"] * 12, adc_gain=[1000.0] * 12,
                    baseline=[0] * 12, write_dir=str(folder))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=None, help="reuse/keep records here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ecgmoe-pp-") as tmp:
        rec_dir = args.dir or Path(tmp) / "records"
        if not rec_dir.is_dir() or len(list(rec_dir.glob("*.hea"))) < args.n:
            write_records(rec_dir, args.n)
        exe = Path(sys.executable).with_name("ecgmoe")
        cmd = [str(exe), "preprocess", str(rec_dir), "-o", str(Path(tmp) / "ds"),
               "--workers", str(args.workers), "--quiet", "--overwrite", "--labels", "none"]
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        n = len(list(rec_dir.glob("*.hea")))
        print(f"command: {' '.join(cmd)}")
        print(f"records: {n}, runs: {', '.join(f'{t:.2f}' for t in times)} s")
        print(f"median {med:.2f} s -> {n / med:.0f} records/s")


if __name__ == "__main__":
    main()
