"""Write a synthetic corpus as a PTB-XL-shaped tree (WFDB format 16 + ptbxl_database.csv).

The WFDB files are written directly (header text + little-endian int16 samples): that is the
whole of format 16, and it is several times faster than going through wfdb.wrsamp.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ecgmoe_cli.simulate.dipole import LEADS
from ecgmoe_cli.simulate.synthetic import database_row, synthesize

GAIN = 1000.0  # ADC units per mV, as in PTB-XL
COLUMNS = ["ecg_id", "patient_id", "age", "sex", "scp_codes", "strat_fold", "filename_lr",
           "filename_hr", "rr_interval", "potassium", "arrhythmia", "note"]


def record_path(ecg_id: int, fs: float = 500.0) -> str:
    """PTB-XL layout: records500/00000/00001_hr (1000 records per folder; records100/..._lr)."""
    suffix = "hr" if fs >= 500 else "lr"
    return f"records{fs:g}/{ecg_id // 1000 * 1000:05d}/{ecg_id:05d}_{suffix}"


def fold_of(ecg_id: int) -> int:
    """strat_fold 1-10, spread evenly (one record per patient, so no leakage across folds)."""
    return (ecg_id * 7) % 10 + 1


def write_wfdb(base: Path, signal_mv: np.ndarray, fs: float, comments: list[str]) -> None:
    """`base`.hea + `base`.dat: format 16, gain 1000/mV, standard lead names."""
    d = np.clip(np.round(signal_mv * GAIN), -32767, 32767).astype("<i2")
    name = base.name
    checks = (d.astype(np.int64).sum(axis=1) + 32768) % 65536 - 32768
    lines = [f"{name} {d.shape[0]} {fs:g} {d.shape[1]}"]
    lines += [f"{name}.dat 16 {GAIN:.1f}(0)/mV 16 0 {int(d[i, 0])} {int(checks[i])} 0 {lead}"
              for i, lead in enumerate(LEADS)]
    lines += [f"# {c}" for c in comments]
    base.with_suffix(".dat").write_bytes(np.ascontiguousarray(d.T).tobytes())
    base.with_suffix(".hea").write_text("\n".join(lines) + "\n", encoding="ascii")


def write_one(args: tuple[Path, int, int, float, float, bool]) -> dict[str, Any]:
    """Render record `index` of corpus `seed` into `root`; returns its database row."""
    root, seed, index, fs, duration, showcase = args
    ecg_id = index + 1
    rel = record_path(ecg_id, fs)
    syn = synthesize(seed, index, fs, duration, showcase=showcase)
    base = root / rel
    base.parent.mkdir(parents=True, exist_ok=True)
    row = database_row(syn, ecg_id, fold_of(ecg_id), seed, rel)
    write_wfdb(base, syn.signal, fs, [f"synthetic record: ecgmoe simulate --seed {seed}",
                                     f"scp_codes: {row['scp_codes']}"])
    return row


def write_database(root: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(sorted(rows, key=lambda r: r["ecg_id"]))
    (root / "ptbxl_database.csv").write_text(buf.getvalue(), encoding="utf-8")


def write_tree(root: Path, n: int, seed: int, fs: float, duration: float, workers: int,
               progress: Callable[[int], None] | None = None, showcase: bool = False
               ) -> list[dict[str, Any]]:
    """Write n records and the database into the existing folder `root`; rows in ecg_id order."""
    jobs = [(root, seed, i, fs, duration, showcase) for i in range(n)]
    rows: list[dict[str, Any]] = []

    def each(it: Iterator[dict[str, Any]]) -> None:
        for row in it:
            rows.append(row)
            if progress:
                progress(1)

    if workers <= 1 or n < 8:
        each(map(write_one, jobs))
    else:
        chunk = max(1, min(64, n // (workers * 8)))
        with ProcessPoolExecutor(max_workers=workers) as pool:
            each(pool.map(write_one, jobs, chunksize=chunk))
    write_database(root, rows)
    return rows


def default_workers() -> int:
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else (os.cpu_count() or 1)))
