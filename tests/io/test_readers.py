"""Readers: every format into a Record in mV; the WFDB fast path equals wfdb.rdrecord; every
broken input is an EcgMoeError."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.records.discover import discover_records
from ecgmoe_cli.io.records.read import read_record
from ecgmoe_cli.io.records.wfdb_fast import fast_path_ok, parse_header

FAST_RECORDS = ["cinc2021/E07505", "ptbxl/00001_lr", "ludb/1", "svdb/800", "wfdb-sample/100",
                "wfdb-sample/v102s", "wfdb-sample/a103l", "cpsc2021/data_21_7",
                "wfdb-sample/s0010_re", "wfdb-sample/test01_00s"]


@pytest.mark.parametrize("name", FAST_RECORDS)
def test_fast_path_equals_wfdb(real_dir: Path, name: str) -> None:
    import wfdb

    hea = real_dir / f"{name}.hea"
    assert fast_path_ok(parse_header(hea))
    rec = read_record(hea)
    ref = wfdb.rdrecord(str(real_dir / name))
    assert rec.fs == ref.fs and rec.lead_names == ref.sig_name
    expected = ref.p_signal.T.astype(np.float32)
    for i, unit in enumerate(ref.units):
        if unit.lower() == "uv":
            expected[i] /= 1000
    np.testing.assert_allclose(rec.signal, expected, rtol=1e-5, atol=1e-5, equal_nan=True)


def test_wfdb_fallback_multirate_record(real_dir: Path) -> None:
    h = parse_header(real_dir / "wfdb-sample/03700181.hea")
    assert not fast_path_ok(h)  # 212 with 4 samples per frame and skew: wfdb reads it
    rec = read_record(real_dir / "wfdb-sample/03700181.hea")
    assert rec.lead_names == ["MCL1", "ABP", "RESP"]
    assert rec.signal.shape[0] == 3 and rec.signal.dtype == np.float32


def test_a_wfdb_record_keeps_its_header_comments(real_dir: Path) -> None:
    rec = read_record(real_dir / "cinc2021/E07505.hea")
    assert rec.signal.shape[0] == 12 and any(c.startswith("Dx") for c in rec.comments)


def test_microvolts_are_converted(tmp_path: Path) -> None:
    x = np.array([[0.0, 1.0, -2.0, 0.5] * 100], dtype=np.float64)  # mV
    (tmp_path / "u.dat").write_bytes(np.round(x * 1000).astype("<i2").T.tobytes())
    (tmp_path / "u.hea").write_text("u 1 100 400\nu.dat 16 1(0)/uV 16 0 0 0 0 II\n")
    np.testing.assert_allclose(read_record(tmp_path / "u.hea").signal, x, atol=1e-6)


def _mimic3_style(folder: Path, sig: np.ndarray) -> Path:
    """A variable-layout multi-segment record as MIMIC-III waveforms store them: a layout
    header (II, V, PLETH), a segment with II + V, a 50-sample gap, a segment with II only."""
    import wfdb

    wfdb.wrsamp("3000003_0001", fs=250, units=["mV"] * 2, sig_name=["II", "V"],
                p_signal=sig[:300, :2], fmt=["16"] * 2, adc_gain=[200.0] * 2, baseline=[0] * 2,
                write_dir=str(folder))
    wfdb.wrsamp("3000003_0002", fs=250, units=["mV"], sig_name=["II"], p_signal=sig[350:, :1],
                fmt=["16"], adc_gain=[200.0], baseline=[0], write_dir=str(folder))
    (folder / "3000003_layout.hea").write_text(
        "3000003_layout 3 250 0\n~ 0 200/mV 16 0 0 0 0 II\n~ 0 200/mV 16 0 0 0 0 V\n"
        "~ 0 1023/NU 8 0 0 0 0 PLETH\n")
    (folder / "3000003.hea").write_text(
        f"3000003/4 3 250 {len(sig)}\n3000003_layout 0\n3000003_0001 300\n~ 50\n"
        f"3000003_0002 {len(sig) - 350}\n")
    return folder / "3000003.hea"


def test_multi_segment_records_read_as_one(tmp_path: Path) -> None:
    import wfdb

    sig = np.round(np.random.default_rng(1).normal(0, 0.5, size=(1000, 2)) * 200) / 200
    wfdb.wrsamp("ms_0", fs=250, units=["mV"] * 2, sig_name=["I", "II"], p_signal=sig[:400],
                fmt=["16"] * 2, adc_gain=[200.0] * 2, baseline=[0] * 2, write_dir=str(tmp_path))
    wfdb.wrsamp("ms_1", fs=250, units=["mV"] * 2, sig_name=["I", "II"], p_signal=sig[400:],
                fmt=["16"] * 2, adc_gain=[200.0] * 2, baseline=[0] * 2, write_dir=str(tmp_path))
    (tmp_path / "ms.hea").write_text("ms/2 2 250 1000\nms_0 400\nms_1 600\n")
    fixed = read_record(tmp_path / "ms.hea")
    assert fixed.lead_names == ["I", "II"] and fixed.fs == 250
    np.testing.assert_allclose(fixed.signal, sig.T, atol=1e-6)

    var = read_record(_mimic3_style(tmp_path, sig))
    assert var.lead_names == ["II", "V", "PLETH"] and var.signal.shape == (3, 1000)
    gap = np.isnan(var.signal)
    assert gap[0].sum() == 50 and gap[0, 300:350].all()  # the '~' segment
    assert gap[1, 300:].all() and not gap[1, :300].any()  # V only in the first segment
    np.testing.assert_allclose(var.signal[0, 350:], sig[350:, 0], atol=1e-6)
    # the segments belong to their master: discovery lists each record once
    assert [p.name for p in discover_records(tmp_path)] == ["3000003.hea", "ms.hea"]


def test_multi_segment_record_with_a_missing_segment_is_one_error(tmp_path: Path) -> None:
    _mimic3_style(tmp_path, np.zeros((1000, 2)))
    (tmp_path / "3000003_0002.hea").unlink()
    with pytest.raises(EcgMoeError, match="segment header '3000003_0002.hea' is missing"):
        read_record(tmp_path / "3000003.hea")
    (tmp_path / "3000003.hea").write_text("3000003/2 3 250 1000\n3000003_layout 0\n"
                                          "../../etc/passwd 1000\n")
    with pytest.raises(EcgMoeError, match="outside"):
        read_record(tmp_path / "3000003.hea")


def test_format_80_and_212_round_trip(tmp_path: Path) -> None:
    import wfdb

    rng = np.random.default_rng(0)
    sig = rng.normal(0, 0.5, size=(1001, 3))
    for fmt in ("80", "212"):
        wfdb.wrsamp(f"r{fmt}", fs=360, units=["mV"] * 3, sig_name=["I", "II", "V1"],
                    p_signal=sig, fmt=[fmt] * 3, adc_gain=[50.0] * 3, baseline=[0] * 3,
                    write_dir=str(tmp_path))
        ref = wfdb.rdrecord(str(tmp_path / f"r{fmt}"))
        rec = read_record(tmp_path / f"r{fmt}.hea")
        np.testing.assert_allclose(rec.signal, ref.p_signal.T, atol=1e-5, equal_nan=True)


def test_edf_keeps_the_ecg_rate_and_converts_units(tmp_path: Path) -> None:
    import pyedflib

    path = tmp_path / "a b.edf"
    n = 256 * 10
    t = np.arange(n) / 256
    ecg = 0.8 * np.sin(2 * np.pi * 1.2 * t)
    heads: list[dict] = [
        {"label": "ECG II", "dimension": "uV", "sample_frequency": 256, "physical_min": -5000,
         "physical_max": 5000, "digital_min": -32768, "digital_max": 32767},
        {"label": "V1", "dimension": "mV", "sample_frequency": 256, "physical_min": -5,
         "physical_max": 5, "digital_min": -32768, "digital_max": 32767},
        {"label": "Resp", "dimension": "a.u.", "sample_frequency": 32, "physical_min": -1,
         "physical_max": 1, "digital_min": -32768, "digital_max": 32767},
    ]
    with pyedflib.EdfWriter(str(path), 3, file_type=pyedflib.FILETYPE_EDFPLUS) as w:
        w.setSignalHeaders(heads)
        w.writeSamples([ecg * 1000, ecg, np.zeros(320)])
    rec = read_record(path)
    assert rec.fs == 256 and rec.lead_names == ["ECG II", "V1"]
    np.testing.assert_allclose(rec.signal[0], ecg, atol=2e-3)
    np.testing.assert_allclose(rec.signal[1], ecg, atol=2e-3)
    bdf = tmp_path / "c.BDF"  # 24-bit EDF (BioSemi and others), found by discovery too
    with pyedflib.EdfWriter(str(bdf), 2, file_type=pyedflib.FILETYPE_BDFPLUS) as w:
        w.setSignalHeaders([dict(h, digital_min=-8388608, digital_max=8388607) for h in heads[:2]])
        w.writeSamples([ecg * 1000, ecg])
    np.testing.assert_allclose(read_record(bdf).signal, [ecg, ecg], atol=1e-5)
    assert discover_records(tmp_path) == [path, bdf]


def test_csv_with_header_and_npy(tmp_path: Path) -> None:
    x = np.random.default_rng(1).normal(size=(2, 500)).astype(np.float32)
    csv = tmp_path / "rec.csv"
    csv.write_text("time,II,V5\n" + "\n".join(f"{i / 250},{a},{b}" for i, (a, b) in
                                                enumerate(x.T)))
    rec = read_record(csv, fs=250)
    assert rec.lead_names == ["II", "V5"] and rec.fs == 250
    np.testing.assert_allclose(rec.signal, x, atol=1e-5)
    np.save(tmp_path / "rec.npy", x.T)  # (n, leads): the short axis is the leads
    rec = read_record(tmp_path / "rec.npy", fs=250, lead_names=["II", "V5"])
    np.testing.assert_allclose(rec.signal, x)


@pytest.mark.parametrize("kwargs", [{}, {"fs": 250}])
def test_npy_without_fs_or_names_is_a_clear_error(tmp_path: Path, kwargs: dict) -> None:
    np.save(tmp_path / "a.npy", np.zeros((2, 100)))
    with pytest.raises(EcgMoeError, match="--fs|--leads"):
        read_record(tmp_path / "a.npy", **kwargs)


def test_headerless_csv_needs_leads(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("0.1,0.2\n0.3,0.4\n")
    with pytest.raises(EcgMoeError, match="--leads"):
        read_record(tmp_path / "a.csv", fs=100)
    assert read_record(tmp_path / "a.csv", fs=100, lead_names=["I", "II"]).signal.shape == (2, 2)


def _hea(folder: Path, text: str, dat: bytes | None = b"\0\0" * 200) -> Path:
    (folder / "r.hea").write_text(text)
    if dat is not None:
        (folder / "r.dat").write_bytes(dat)
    return folder / "r.hea"


@pytest.mark.parametrize("text,dat,cause", [
    ("r 1 250 100\nr.dat 16 200/mV 16 0 0 0 0 I\n", None, "missing"),
    ("r 1 250 1000\nr.dat 16 200/mV 16 0 0 0 0 I\n", b"\0\0" * 10, "truncated"),
    ("r 1 250 0\nr.dat 16 200/mV 16 0 0 0 0 I\n", b"", "no samples"),
    ("r 1 -250 100\nr.dat 16 200/mV 16 0 0 0 0 I\n", b"\0\0" * 100, "sampling rate"),
    ("r 1 1e12 100\nr.dat 16 200/mV 16 0 0 0 0 I\n", b"\0\0" * 100, "sampling rate"),
    ("r 1 fast 100\nr.dat 16 200/mV 16 0 0 0 0 I\n", b"\0\0" * 100, "sampling rate"),
    ("r 1 250 100\n../../etc/passwd 16 200/mV 16 0 0 0 0 I\n", None, "outside"),
    ("r 1 250 100\n/etc/passwd 16 200/mV 16 0 0 0 0 I\n", None, "outside"),
    ("hello world\n", None, "header"),
    ("", None, "header"),
    ("r 1 250 100\nr.dat 999 200/mV 16 0 0 0 0 I\n", b"\0\0" * 100, "unreadable"),
    ("r 3 250 100\nr.dat 16 200/mV 16 0 0 0 0 I\n", b"\0\0" * 100, "3 signals"),
])
def test_broken_wfdb_is_one_ecgmoe_error(tmp_path: Path, text: str, dat: bytes | None,
                                          cause: str) -> None:
    with pytest.raises(EcgMoeError, match=cause) as e:
        read_record(_hea(tmp_path, text, dat))
    assert "\n" not in str(e.value) and "r.hea" in str(e.value)


def test_binary_garbage_and_bad_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    (tmp_path / "g.hea").write_bytes(rng.bytes(300))
    (tmp_path / "e.edf").write_bytes(b"")
    (tmp_path / "t.edf").write_bytes(b"0       " + rng.bytes(500))
    (tmp_path / "p.npy").write_bytes(b"\x93NUMPY\x01\x00v\x00{'descr': '|O', 'fortran_order': "
                                     b"False, 'shape': (2,), }" + b" " * 50 + b"\n" + b"\x80" * 30)
    kws: tuple[tuple[str, dict], ...] = (
        ("g.hea", {}), ("e.edf", {}), ("t.edf", {}), ("p.npy", {"fs": 100, "lead_names": ["I"]}),
        ("nope.hea", {}), ("x.xyz", {}))
    for name, kw in kws:
        with pytest.raises(EcgMoeError):
            read_record(tmp_path / name, **kw)


def test_permission_denied_is_one_line(tmp_path: Path, real_dir: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """As root chmod 000 changes nothing, so the denial is simulated at the read."""
    def deny(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", deny)
    with pytest.raises(EcgMoeError, match="Permission denied"):
        read_record(real_dir / "ptbxl/00001_lr.hea")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_permission_denied(tmp_path: Path, real_dir: Path) -> None:
    for ext in ("hea", "dat"):
        shutil.copy(real_dir / f"ptbxl/00001_lr.{ext}", tmp_path / f"00001_lr.{ext}")
        (tmp_path / f"00001_lr.{ext}").chmod(0)
    with pytest.raises(EcgMoeError, match="ermission"):
        read_record(tmp_path / "00001_lr.hea")


def test_discover_is_recursive_sorted_and_tolerant(tmp_path: Path, real_dir: Path) -> None:
    root = tmp_path / "in"
    (root / "sub dir").mkdir(parents=True)
    for ext in ("hea", "dat"):
        (root / "sub dir" / f"00001_lr.{ext}").symlink_to(real_dir / f"ptbxl/00001_lr.{ext}")
    (root / "notes.txt").write_text("hello")
    (root / "x.dat").write_bytes(b"\0")
    (root / "labels.csv").write_text("record,age\n")
    (root / "b.edf").write_bytes(b"")
    (root / "loop").symlink_to(root)  # a link back up the tree must not loop
    (root / "again").symlink_to(root / "sub dir")  # a second path to the same record
    found = discover_records(root)
    # the record reached as "again/..." and "sub dir/..." is listed once, by its first path
    assert [p.relative_to(root).as_posix() for p in found] == ["again/00001_lr.hea", "b.edf"]
    assert discover_records(root) == found
    assert discover_records(root / "b.edf") == [root / "b.edf"]
    # a WFDB record named without its .hea, as wfdb and PhysioNet name them
    assert discover_records(root / "sub dir" / "00001_lr") == [root / "sub dir" / "00001_lr.hea"]
    with pytest.raises(EcgMoeError, match="no such folder or file"):
        discover_records(root / "sub dir" / "00002_lr")


def test_discover_real_folder_finds_48_records(real_dir: Path) -> None:
    assert len(discover_records(real_dir)) == 48
