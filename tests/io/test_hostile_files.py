"""Hostile files cost one error row, bounded time and memory (issue 24, R3, R4, R6, R7, R14):
only regular files are read, only the bytes a header declares, never a link out of INPUT."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from run_cli import ecgmoe

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.records.discover import discover_records
from ecgmoe_cli.io.records.read import read_record
from ecgmoe_cli.signal.leads import CANONICAL_LEADS


def _wfdb(folder: Path, name: str, n: int = 5000, write_dat: bool = True) -> Path:
    """A 12-lead format-16 record: spikes at 75 bpm plus noise."""
    folder.mkdir(parents=True, exist_ok=True)
    fs = 500
    t = np.arange(n) / fs
    beat = np.exp(-((t[:, None] - np.arange(0.2, n / fs, 0.8)) / 0.01) ** 2).sum(1)
    noise = np.random.default_rng(0).normal(0, 0.02, (n, 12))
    if write_dat:
        (1000 * (beat[:, None] + noise)).astype("<i2").tofile(folder / f"{name}.dat")
    lines = [f"{name} 12 {fs} {n}"] + [f"{name}.dat 16 1000/mV 16 0 0 0 0 {lead}"
                                         for lead in CANONICAL_LEADS]
    (folder / f"{name}.hea").write_text("\n".join(lines) + "\n")
    return folder / f"{name}.hea"


def test_a_named_pipe_signal_file_is_an_error_row_and_the_run_goes_on(tmp_path: Path) -> None:
    """R3: the run hung on the pipe and lost the good record (predict and preprocess)."""
    root = tmp_path / "in"
    _wfdb(root, "good")
    _wfdb(root, "piped", write_dat=False)
    os.mkfifo(root / "piped.dat")
    with pytest.raises(EcgMoeError, match="'piped.dat' is not a regular file"):
        read_record(root / "piped.hea")
    r = ecgmoe("predict", root, "-o", tmp_path / "r.parquet", "--workers", 1, "-q", timeout=120)
    assert r.returncode == 0, r.stderr
    rows = {row["record"]: row for row in pq.read_table(tmp_path / "r.parquet").to_pylist()}
    assert rows["good"]["status"] == "ok" and "not a regular file" in rows["piped"]["error"]
    r = ecgmoe("preprocess", root, "-o", tmp_path / "ds", "--labels", "none", "-q", timeout=120)
    assert r.returncode == 0, r.stderr


def test_a_device_or_a_huge_signal_file_is_read_only_as_far_as_the_header_declares(
        tmp_path: Path) -> None:
    """R4: /dev/zero grew memory until killed; a 2 GB .dat under a 10 s header read 2.1 GB."""
    zero = _wfdb(tmp_path / "zero", "z", write_dat=False)
    (zero.parent / "z.dat").symlink_to("/dev/zero")
    with pytest.raises(EcgMoeError, match=r"links out of its record's folder \(to /dev/zero\)"):
        read_record(zero)
    big = _wfdb(tmp_path / "big", "b")
    with open(big.with_suffix(".dat"), "r+b") as f:
        f.truncate(2 << 30)  # 2 GiB (sparse): the first 120 kB are the record
    tracemalloc.start()
    rec = read_record(big)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert rec.signal.shape == (12, 5000) and peak < 20 << 20, peak


def test_a_signal_file_linked_out_of_its_folder_is_refused(tmp_path: Path) -> None:
    """R7: the outside-the-folder check looked only at the name."""
    outside = _wfdb(tmp_path / "outside", "secret")
    hea = _wfdb(tmp_path / "in", "rec", write_dat=False)
    (hea.parent / "rec.dat").symlink_to(outside.with_suffix(".dat"))
    with pytest.raises(EcgMoeError, match="'rec.dat' links out of its record's folder"):
        read_record(hea)
    linked = tmp_path / "in" / "linked"  # a whole record linked in (header and signal) reads
    linked.mkdir()
    for f in outside.parent.iterdir():
        (linked / f.name).symlink_to(f)
    assert read_record(linked / "secret.hea").signal.shape == (12, 5000)


def test_linked_folders_out_of_input_are_not_walked(tmp_path: Path) -> None:
    """R6: a link to an outside folder was predicted; a link to `/` walked the machine."""
    _wfdb(tmp_path / "outside", "secret")
    root = tmp_path / "in"
    _wfdb(root / "sub", "mine")
    (root / "out_link").symlink_to(tmp_path / "outside")
    (root / "slash").symlink_to("/")
    (root / "inner_link").symlink_to(root / "sub")  # inside INPUT: still followed (once)
    assert [p.name for p in discover_records(root)] == ["mine.hea"]


def test_an_implausible_sampling_rate_is_refused_up_front(tmp_path: Path) -> None:
    """R14: --fs 0.001 on a 2,500-row CSV hung predict; preprocess wrote 14.5 GB."""
    root = tmp_path / "in"
    root.mkdir()
    np.savetxt(root / "r.csv", np.random.default_rng(0).normal(size=(2500, 2)),
               delimiter=",", header="I,II", comments="")
    for cmd in (["predict", root, "-o", tmp_path / "r.parquet"],
                ["preprocess", root, "-o", tmp_path / "ds"]):
        r = ecgmoe(*cmd, "--fs", "0.001", timeout=60)
        assert r.returncode == 1 and "--fs 0.001 Hz is not a plausible" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
    slow = _wfdb(tmp_path / "hdr", "slow", n=2500)  # the same lie in a header
    slow.write_text(slow.read_text().replace("slow 12 500 2500", "slow 12 0.001 2500"))
    with pytest.raises(EcgMoeError, match="sampling rate 0.001 Hz is not plausible"):
        read_record(slow)
