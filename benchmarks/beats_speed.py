"""What `predict --beats` costs: 2,000 10 s records and one 24 h Holter, with and without it.

    .venv/bin/python benchmarks/beats_speed.py [--n 2000] [--hours 24] [--repeats 1]
        [--work data/beats-speed]

The 10 s records are `predict_speed.py`'s (`ecgmoe simulate`, 12-lead 500 Hz); the Holter is a
simulated 120 s record's leads II and V5 at 250 Hz, repeated to 24 h (a 2-lead WFDB record).
Both use the shipped weights (with the beat head). Prints the wall time of the whole command,
its peak RSS (the largest process: main or one worker) and the rows written, per run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predict_speed import make_records  # noqa: E402


def make_holter(folder: Path, hours: float) -> Path:
    """A 2-lead 250 Hz WFDB record of `hours`, from one simulated 120 s record; reused."""
    import wfdb

    from ecgmoe_cli.io.records.read import read_record

    name = f"holter-{hours:g}h"  # one file per length: a 2 h record is not reused for 24 h
    head = folder / f"{name}.hea"
    if head.is_file():
        return head
    seed_dir = folder / "seed"
    subprocess.run([str(Path(sys.executable).with_name("ecgmoe")), "simulate", str(seed_dir),
                    "-n", "1", "--fs", "500", "--duration", "120", "--seed", "3", "--overwrite",
                    "--quiet"], check=True)
    rec = read_record(next(seed_dir.rglob("*.hea")))
    rows = [rec.lead_names.index(n) for n in ("II", "V5")]
    x = rec.signal[rows, ::2].T  # (n, 2) at 250 Hz
    x = np.tile(x, (int(np.ceil(hours * 3600 / 120)), 1))[: int(hours * 3600 * 250)]
    wfdb.wrsamp(name, fs=250, units=["mV", "mV"], sig_name=["II", "V5"],
                p_signal=x, fmt=["16", "16"], adc_gain=[200.0, 200.0], baseline=[0, 0],
                write_dir=str(folder))
    return head


_WRAP = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
         "stdout=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN)"
         ".ru_maxrss)")


def timed(args: list[str]) -> tuple[float, float]:
    """Wall seconds and the peak RSS (MB) of the largest process the command ran (measured in
    a wrapper process of its own, so each run's peak is its own)."""
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", _WRAP, *args], check=True, capture_output=True,
                         text=True)
    wall = time.perf_counter() - t0
    return wall, int(res.stdout.split()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--work", type=Path, default=Path("data/beats-speed"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    short = args.work / f"records-{args.n}"
    make_records(short, args.n)
    holter = make_holter(args.work / "holter", args.hours)
    exe = str(Path(sys.executable).with_name("ecgmoe"))
    print("| input | --beats | wall s | peak RSS MB (largest process) | beat rows |")
    print("|---|---|---|---|---|")
    for _ in range(args.repeats):
        for name, src in ((f"{args.n} x 10 s", short), (f"{args.hours:g} h Holter", holter)):
            for beats in (False, True):
                out = args.work / "out.parquet"
                wall, rss = timed([exe, "predict", str(src), "-o", str(out), "--overwrite",
                                   "--quiet", *(["--beats"] if beats else [])])
                rows = "-"
                if beats:
                    import pyarrow.parquet as pq

                    rows = str(pq.ParquetFile(args.work / "out.beats.parquet").metadata.num_rows)
                print(f"| {name} | {'yes' if beats else 'no'} | {wall:.1f} | {rss:.0f} | "
                      f"{rows} |", flush=True)


if __name__ == "__main__":
    main()
