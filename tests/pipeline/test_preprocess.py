"""`ecgmoe preprocess` end to end: real records, a broken file, the whole real folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ecgmoe_cli.cli import app
from ecgmoe_cli.io.dataset import open_dataset

runner = CliRunner()
SOME = ["cinc2021/E07505", "cinc2021/E07509", "wfdb-sample/test01_00s", "svdb/800"]


def _link_some(real_dir: Path, folder: Path) -> None:
    for name in SOME:
        sub = folder / Path(name).parent
        sub.mkdir(parents=True, exist_ok=True)
        for f in real_dir.glob(f"{name}.*"):
            (sub / f.name).symlink_to(f)


def test_preprocess_real_records_and_a_broken_one(real_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in put"
    _link_some(real_dir, folder)
    (folder / "broken.hea").write_text("broken 1 250 1000\nbroken.dat 16 200/mV 16 0 0 0 0 I\n")
    (folder / "notes.txt").write_text("not a record")
    out = tmp_path / "ds"
    r = runner.invoke(app, ["preprocess", str(folder), "-o", str(out), "--workers", "2",
                            "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["records"] == 5 and summary["ok"] == 4 and summary["errors"] == 1
    ds = open_dataset(out)
    idx = ds.index
    err = idx[idx["status"] == "error"]
    assert err["record"].tolist() == ["broken"] and "missing" in err["error"].iloc[0]
    ok = idx[idx["status"] == "ok"]
    assert sorted(set(ok["record"])) == ["800", "E07505", "E07509", "test01_00s"]
    assert ok.groupby("record").size().to_dict() == {"800": 180, "E07505": 1, "E07509": 1,
                                                     "test01_00s": 1}
    e05 = ok[ok["record"] == "E07505"].iloc[0]
    assert e05["y_hypertrophy__lvh"] == 1 and e05["y_age"] == 77 and 1 <= e05["fold"] <= 10
    assert ok[ok["record"] == "test01_00s"]["leads_used"].iloc[0] == "II"
    batch = ds.batch(ds.rows())
    assert batch["signal"].shape == (len(ds), 12, ds.spec.window_samples)
    assert np.isfinite(batch["signal"]).all()
    # deterministic: a second run with one worker writes the same arrays and index
    out2 = tmp_path / "ds2"
    r = runner.invoke(app, ["preprocess", str(folder), "-o", str(out2), "--workers", "1",
                            "--quiet"])
    assert r.exit_code == 0, r.output
    ds2 = open_dataset(out2)
    np.testing.assert_array_equal(ds2.arrays["signals"], ds.arrays["signals"])
    np.testing.assert_array_equal(ds2.arrays["rpeaks"], ds.arrays["rpeaks"])
    cols = [c for c in ds.index.columns if c != "path"]
    assert ds2.index[cols].equals(ds.index[cols])


def test_strict_and_existing_output(real_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "broken.hea").write_text("broken 1 250 1000\n")
    for ext in ("hea", "dat"):
        (folder / f"00001_lr.{ext}").symlink_to(real_dir / f"ptbxl/00001_lr.{ext}")
    out = tmp_path / "ds"
    r = runner.invoke(app, ["preprocess", str(folder), "-o", str(out), "--strict", "--quiet"])
    assert r.exit_code == 1 and "1 of 2 records failed" in r.output
    assert out.is_dir()  # the dataset is still written
    r = runner.invoke(app, ["preprocess", str(folder), "-o", str(out), "--quiet"])
    assert r.exit_code == 1 and "--overwrite" in r.output
    r = runner.invoke(app, ["preprocess", str(tmp_path / "nothing"), "-o", str(out)])
    assert r.exit_code == 1 and "no such folder" in r.output


def test_csv_records_need_fs_and_get_it(tmp_path: Path) -> None:
    folder = tmp_path / "csv"
    folder.mkdir()
    t = np.arange(2500) / 250
    sig = np.sin(2 * np.pi * 1.1 * t) ** 41
    (folder / "a.csv").write_text("II,V2\n" + "\n".join(f"{v},{-v}" for v in sig))
    r = runner.invoke(app, ["preprocess", str(folder), "-o", str(tmp_path / "no_fs"), "--json",
                            "--labels", "none"])
    assert r.exit_code == 0 and json.loads(r.stdout)["errors"] == 1
    r = runner.invoke(app, ["preprocess", str(folder), "-o", str(tmp_path / "fs"), "--json",
                            "--fs", "250", "--labels", "none"])
    assert r.exit_code == 0 and json.loads(r.stdout)["ok"] == 1


def test_all_48_real_records_are_ok(real_dir: Path, tmp_path: Path) -> None:
    r = runner.invoke(app, ["preprocess", str(real_dir), "-o", str(tmp_path / "ds"),
                            "--workers", "2", "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["records"] == 48 and s["ok"] == 48, s["first_errors"]
    idx = open_dataset(tmp_path / "ds").index
    assert (idx["status"] == "ok").all() and idx["record"].nunique() == 48


def test_long_record_rows_carry_the_whole_record_rate(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A record longer than one block is written block by block, read and prepared once, yet
    every index row holds the whole record's heart rate and beat count (INTERFACES.md), as
    prepare_from_record gives."""
    from broken_inputs import holter_24h

    from ecgmoe_cli.io.records.read import read_record
    from ecgmoe_cli.pipeline import preprocess
    from ecgmoe_cli.pipeline.prepare import CHUNK_S, prepare_chunks, prepare_from_record
    from ecgmoe_cli.signal.spec import PreprocessSpec

    case = holter_24h(tmp_path, hours=1.2 * CHUNK_S / 3600)  # two blocks
    out = tmp_path / "ds"
    calls: list[str] = []
    monkeypatch.setattr(preprocess, "read_record",
                        lambda *a, **k: calls.append("read") or read_record(*a, **k))
    monkeypatch.setattr(preprocess, "prepare_chunks",
                        lambda *a, **k: calls.append("prepare") or prepare_chunks(*a, **k))
    r = runner.invoke(app, ["preprocess", str(tmp_path), "-o", str(out), "--workers", "1",
                            "--quiet", "--labels", "none"])
    assert r.exit_code == 0, r.output
    assert calls == ["read", "prepare"]
    idx = open_dataset(out).index
    whole = prepare_from_record(read_record(case.record), PreprocessSpec())
    assert len(idx) == len(whole.n_valid) and whole.n_beats > 2000
    assert set(idx["n_beats"]) == {whole.n_beats}
    assert np.allclose(idx["heart_rate_bpm"], whole.heart_rate_bpm)
    assert abs(whole.heart_rate_bpm - 66) < 2
