"""`ecgmoe simulate` end to end: the PTB-XL-shaped tree, its labels for all ten tasks,
determinism."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import wfdb
from typer.testing import CliRunner

from ecgmoe_cli.cli import app
from ecgmoe_cli.io.labels.codes import DIAGNOSTIC_TASKS, codes_to_targets, scp_table
from ecgmoe_cli.io.labels.detect import open_label_source
from ecgmoe_cli.io.records.record import Record
from ecgmoe_cli.simulate.diagnosis import draw_diagnosis
from ecgmoe_cli.simulate.dipole import LEADS
from ecgmoe_cli.simulate.synthetic import synthesize
from ecgmoe_cli.simulate.tree import COLUMNS
from ecgmoe_cli.tasks import ARRHYTHMIA_CLASSES, TASKS

runner = CliRunner()
N, SEED = 12, 5


def _simulate(out: Path, *extra: str) -> None:
    result = runner.invoke(app, ["simulate", str(out), "-n", str(N), "--seed", str(SEED), "--quiet",
                                 *extra])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "corpus"
    _simulate(out, "--workers", "1")
    return out


def _rows(tree: Path) -> list[dict[str, str]]:
    with open(tree / "ptbxl_database.csv", newline="") as f:
        return list(csv.DictReader(f))


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_tree_layout_and_columns(tree: Path) -> None:
    rows = _rows(tree)
    assert list(rows[0]) == COLUMNS and len(rows) == N
    assert sorted(p.name for p in tree.iterdir()) == ["ptbxl_database.csv", "records500"]
    for i, row in enumerate(rows, start=1):
        rel = f"records500/00000/{i:05d}_hr"
        assert row["filename_hr"] == rel and row["ecg_id"] == str(i)
        assert (tree / f"{rel}.hea").is_file() and (tree / f"{rel}.dat").is_file()
        assert 1 <= int(row["strat_fold"]) <= 10 and row["sex"] in ("0", "1")
        assert row["arrhythmia"] in ARRHYTHMIA_CLASSES and row["potassium"] in ("0", "1")
        assert row["note"].startswith("synthetic") and 250 < float(row["rr_interval"]) < 2000


def test_wfdb_records_read_back_exactly(tree: Path) -> None:
    rec = wfdb.rdrecord(str(tree / "records500/00000/00003_hr"))
    assert rec.sig_name == LEADS and rec.fs == 500 and rec.sig_len == 5000
    assert set(rec.units) == {"mV"} and set(rec.fmt) == {"16"}
    syn = synthesize(SEED, 2)  # ecg_id 3 is record index 2
    assert np.allclose(rec.p_signal.T, np.round(syn.signal * 1000) / 1000, atol=1e-9)


def test_labels_for_all_ten_tasks_match_the_drawn_diagnosis(tree: Path) -> None:
    from ecgmoe_cli.io.labels.codes import scp_table

    source = open_label_source(tree)
    assert {t.name for t in source.tasks} >= set(TASKS) - {"noise"}
    morphology = ("infarction", "hypertrophy", "conduction", "st_t", "superclass")
    for i, row in enumerate(_rows(tree)):
        path = tree / f"{row['filename_hr']}.hea"
        rec = Record(str(path), path.stem, np.zeros((12, 10), np.float32), 500.0, list(LEADS))
        y = source.labels_for(rec)
        dx = synthesize(SEED, i).dx
        # as in PTB-XL's benchmark: a record with only rhythm codes has no diagnostic labels
        diagnostic = any(scp_table()[c].superclass for c in dx.scp_codes() if c in scp_table())
        columns = [c for t in source.tasks for c in t.columns()
                   if diagnostic or t.name not in morphology]
        assert all(np.isfinite(y[c]) for c in columns), {c: y.get(c) for c in columns}
        assert diagnostic or all(np.isnan(y[c]) for c in TASKS["superclass"].columns())
        assert row["scp_codes"] == repr(dx.scp_codes())
        assert y["y_arrhythmia"] == ARRHYTHMIA_CLASSES.index(dx.arrhythmia())
        assert y["y_potassium__abnormal"] == float(bool(dx.potassium))
        assert y["y_age"] == dx.age and y["y_sex__female"] == float(dx.female)


def test_same_seed_same_bytes_with_workers(tree: Path, tmp_path: Path) -> None:
    _simulate(tmp_path / "again", "--workers", "2")
    assert _files(tmp_path / "again") == _files(tree)


def test_refuses_non_empty_folder_and_overwrites_atomically(tmp_path: Path) -> None:
    out = tmp_path / "c"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    result = runner.invoke(app, ["simulate", str(out), "-n", "2", "--quiet"])
    assert result.exit_code == 1 and "not empty" in result.output
    _simulate(out, "--overwrite")
    assert not (out / "keep.txt").exists() and len(_rows(out)) == N
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # no temp folder left


def test_label_mix_covers_every_diagnostic_label() -> None:
    counts: dict[str, float] = {}
    normal = 0
    n = 4000
    for i in range(n):
        dx = draw_diagnosis(np.random.default_rng([99, i]))
        normal += not dx.findings
        for k, v in codes_to_targets(dx.scp_codes(), scp_table()).items():
            counts[k] = counts.get(k, 0.0) + (v == 1.0)
    assert 0.35 < normal / n < 0.45
    for task in DIAGNOSTIC_TASKS:
        for col in TASKS[task].columns():
            assert counts[col] / n > 0.02, col
