"""Speed of `ecgmoe simulate` against neurokit2's 12-lead simulator, in one run.

    .venv/bin/python benchmarks/simulate_speed.py [--n 500] [--nk 5] [--workers 0]

Times `nk.ecg_simulate(duration=10, sampling_rate=500, method="multileads")` on --nk records
(in this process, after one warm-up call), then the whole `ecgmoe simulate OUT -n N` command
(process start to exit, writing WFDB files and the database), and prints both per 10 s record
and their ratio. neurokit2 only returns arrays, so its figure leaves out writing files: the
comparison favours neurokit2.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def time_neurokit(n: int) -> float:
    """Seconds per 10 s 12-lead 500 Hz record."""
    import warnings

    import neurokit2 as nk

    warnings.simplefilter("ignore")
    nk.ecg_simulate(duration=10, sampling_rate=500, method="multileads", random_state=0)
    t = time.perf_counter()
    for i in range(n):
        nk.ecg_simulate(duration=10, sampling_rate=500, heart_rate=60 + 5 * i, method="multileads",
                        random_state=i + 1)
    return (time.perf_counter() - t) / n


def time_ecgmoe(n: int, workers: int) -> float:
    """Seconds per record of the whole `ecgmoe simulate` command."""
    exe = Path(sys.executable).with_name("ecgmoe")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sim"
        cmd = [str(exe), "simulate", str(out), "-n", str(n), "--seed", "1", "--quiet",
               "--workers", str(workers)]
        t = time.perf_counter()
        subprocess.run(cmd, check=True)
        elapsed = time.perf_counter() - t
        assert sum(1 for _ in out.rglob("*.dat")) == n
        shutil.rmtree(out)
    return elapsed / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500, help="records for ecgmoe simulate")
    ap.add_argument("--nk", type=int, default=5, help="records for neurokit2")
    ap.add_argument("--workers", type=int, default=0,
                    help="ecgmoe simulate --workers (0 = all cores)")
    a = ap.parse_args()
    nk_s = time_neurokit(a.nk)
    ours = time_ecgmoe(a.n, a.workers)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"cores available: {cores}")
    print(f"neurokit2 ecg_simulate(method='multileads'): {nk_s * 1000:8.1f} ms per 10 s record "
          f"({a.nk} records, arrays only)")
    print(f"ecgmoe simulate -n {a.n} (whole command, files written): "
          f"{ours * 1000:8.2f} ms per record ({1 / ours:.0f} records/s)")
    print(f"speed-up: {nk_s / ours:.0f}x")


if __name__ == "__main__":
    main()
