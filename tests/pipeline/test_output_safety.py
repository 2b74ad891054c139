"""Nothing a user has is replaced, and every failure is said (issue 24, items 1-2, 8-9; R1, R2,
R13, R17): each case ends in one line and a non-zero exit, with nothing left behind."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from broken_inputs import FS_ARGS, csv_record
from fakes import make_fake_dataset
from run_cli import invoke, one_line_error


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under root with its bytes (None for a folder): what must not change."""
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes()
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def records(tmp_path: Path) -> Path:
    root = tmp_path / "records"
    root.mkdir()
    for i in range(2):
        csv_record(root / f"good{i}.csv", 60 + 20 * i)
    return root


def _predict(inp: Path, out: Path, w: Path, *extra: object) -> tuple[int, str, str]:
    return invoke("predict", inp, "-o", out, "--weights", w, "--workers", 1, *FS_ARGS, *extra)


# --- item 1: finetune never writes into the shipped weights --------------------------------

def test_finetune_without_output_writes_a_new_run_folder_not_the_shipped_weights(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_backbone: Path,
        tiny_dataset: Path) -> None:
    import ecgmoe_cli.weights.meta as wm
    from ecgmoe_cli.training import finetune

    shipped = tmp_path / "pkg" / "weights"
    shutil.copytree(tiny_backbone, shipped)
    monkeypatch.setattr(wm, "default_weights_dir", lambda: shipped)
    monkeypatch.setattr(finetune, "default_weights_dir", lambda: shipped)
    ds = tiny_dataset
    before = _tree(shipped)
    monkeypatch.chdir(tmp_path)
    args = ["finetune", "--task", "sex", "--data", ds, "--epochs", 1, "--batch-size", 8, "-q"]
    code, out, err = invoke(*args)
    assert code == 0, err
    assert _tree(shipped) == before  # not one byte of the shipped weights changed
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("finetune-sex-") and f"runs/{run.name}" in err
    assert (run / "adapters" / "sex.json").is_file() and (run / "backbone.json").is_file()
    one_line_error(*invoke(*args, "-o", shipped)[::2], "shipped weights")
    one_line_error(*invoke(*args, "--resume")[::2], "--resume needs -o")
    assert _tree(shipped) == before


# --- item 2, R2: predict -o replaces only a report, only with --overwrite ------------------

@pytest.mark.parametrize("name", ["notes.txt", "labels_keep.csv", "out.pq", "fake.parquet"])
def test_predict_refuses_an_output_file_that_is_not_a_report(
        name: str, records: Path, tiny_weights: Path, tmp_path: Path) -> None:
    target = tmp_path / name
    target.write_text("hi\n")
    for extra in ([], ["--overwrite"], ["--resume"]):
        one_line_error(*_predict(records, target, tiny_weights, *extra)[::2],
                       "not a Parquet report")
        assert target.read_text() == "hi\n"


def test_predict_refuses_a_folder_that_is_not_a_report_dataset(
        records: Path, tiny_weights: Path, tmp_path: Path) -> None:
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    one_line_error(*_predict(records, folder, tiny_weights, "--overwrite")[::2],
                   "not a report dataset")
    assert _tree(folder) == {"notes.txt": b"keep me"}


@pytest.mark.parametrize("out_name", ["r.parquet", "results"])
def test_predict_replaces_a_report_only_with_overwrite(
        out_name: str, records: Path, tiny_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / out_name
    assert _predict(records, out, tiny_weights, "-q")[0] == 0
    before = _tree(out) if out.is_dir() else out.read_bytes()
    one_line_error(*_predict(records, out, tiny_weights, "-q")[::2], "--overwrite")
    assert (_tree(out) if out.is_dir() else out.read_bytes()) == before
    code, _, err = _predict(records, out, tiny_weights, "-q", "--overwrite")
    assert code == 0, err and len(pq.read_table(out)) == 2


def test_predict_never_writes_over_its_input(records: Path, tiny_weights: Path) -> None:
    rec = records / "good0.csv"
    before = _tree(records)
    for extra in ([], ["--overwrite"]):
        one_line_error(*_predict(rec, rec, tiny_weights, *extra)[::2], "is the input")
        one_line_error(*_predict(rec, records, tiny_weights, *extra)[::2], "holds the input")
    assert _tree(records) == before


# --- R1: preprocess --overwrite never replaces its input or what it did not write ----------

def test_preprocess_overwrite_never_replaces_the_input_or_a_foreign_folder(
        records: Path, tmp_path: Path) -> None:
    (records / "unrelated.txt").write_text("mine")
    before = _tree(tmp_path)
    for out in (records, tmp_path):  # IN itself, a parent of IN
        one_line_error(*invoke("preprocess", records, "-o", out, "--overwrite", "-q",
                               *FS_ARGS)[::2], "input")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "a.txt").write_text("x")
    one_line_error(*invoke("preprocess", records, "-o", foreign, "--overwrite", "-q",
                           *FS_ARGS)[::2], "not a dataset")
    assert _tree(tmp_path) == before | {"foreign": None, "foreign/a.txt": b"x"}
    ds = tmp_path / "ds"
    assert invoke("preprocess", records, "-o", ds, "-q", *FS_ARGS)[0] == 0
    assert invoke("preprocess", records, "-o", ds, "-q", "--overwrite", *FS_ARGS)[0] == 0


# --- item 8: failures named in the summary, --json, --strict; a failed single file ---------

def test_failures_are_listed_with_their_cause_and_where_the_rest_are(
        records: Path, tiny_weights: Path, tmp_path: Path) -> None:
    for i in range(7):
        (records / f"bad{i}.csv").write_text("")
    out = tmp_path / "r.parquet"
    code, _, err = _predict(records, out, tiny_weights)
    assert code == 0, err
    failed = [line for line in err.splitlines() if line.startswith("failed:")]
    assert len(failed) == 5 and all("bad" in f and "empty file" in f for f in failed)
    assert "and 2 more" in err and str(out) in err.replace("\n", "")
    code, stdout, _ = _predict(records, out, tiny_weights, "--json", "--overwrite")
    summary = json.loads(stdout)
    assert summary["status"] == {"ok": 2, "error": 7} and len(summary["errors"]) == 7
    assert all(e["path"].endswith(".csv") and "empty file" in e["error"]
               for e in summary["errors"])
    code, _, err = _predict(records, out, tiny_weights, "--strict", "-q", "--overwrite")
    one_line_error(code, err, "7 record(s) failed", "bad0.csv: empty file")


def test_a_single_file_that_fails_exits_non_zero(tiny_weights: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("")
    one_line_error(*_predict(bad, tmp_path / "r.parquet", tiny_weights)[::2],
                   "bad.csv: empty file")
    one_line_error(*invoke("preprocess", bad, "-o", tmp_path / "ds", "--labels", "none",
                           *FS_ARGS)[::2],
                   "bad.csv: empty file")


# --- item 9, R13: outputs that cannot be written: one line, nothing left -------------------

def test_unwritable_outputs_are_one_line_and_leave_nothing(
        records: Path, tiny_weights: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere: make the folder read-only to this process
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == locked
                            else real_access(p, mode, **kw))
    before = _tree(tmp_path)
    for out in (Path("/proc/out.parquet"), afile / "out.parquet", locked / "out.parquet",
                locked / "results"):
        one_line_error(*_predict(records, out, tiny_weights)[::2], "cannot write")
        one_line_error(*invoke("preprocess", records, "-o", out.with_suffix(""), *FS_ARGS)[::2],
                       "cannot write")
    assert _tree(tmp_path) == before
    assert not Path("/proc/out.parquet.partial").exists()


def test_a_full_disk_is_one_line_and_leaves_no_temporary_file(
        records: Path, tiny_weights: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """R13: ENOSPC while rows are written (predict) or arrays appended (preprocess)."""
    from ecgmoe_cli.io import dataset_writer

    def full(*_: object, **__: object) -> None:
        raise OSError(28, "No space left on device")

    before = _tree(tmp_path)
    monkeypatch.setattr(pq.ParquetWriter, "write_table", full)
    one_line_error(*_predict(records, tmp_path / "r.parquet", tiny_weights)[::2],
                   "cannot write the report (No space left on device)")
    monkeypatch.undo()
    monkeypatch.setattr(dataset_writer._NpyAppender, "append", full)
    one_line_error(*invoke("preprocess", records, "-o", tmp_path / "ds", "--workers", 1,
                           "--labels", "none", *FS_ARGS)[::2],
                   "cannot write the dataset (No space left on device)")
    assert _tree(tmp_path) == before  # no .partial/, no part .tmp, no ds.tmp-<pid>


def test_resume_with_other_tasks_is_refused_and_keeps_the_report(
        records: Path, tiny_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.parquet"
    assert _predict(records, out, tiny_weights, "-q")[0] == 0
    before = _tree(tmp_path)
    one_line_error(*_predict(records, out, tiny_weights, "--resume", "--tasks", "sex")[::2],
                   "cannot resume", "other columns")
    assert _tree(tmp_path) == before  # no .partial/ left


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_says_the_torch_is_a_cpu_build(
        records: Path, tiny_weights: Path, tmp_path: Path) -> None:
    code, _, err = _predict(records, tmp_path / "r.parquet", tiny_weights, "--device", "cuda")
    one_line_error(code, err, "CUDA is not available")
    if torch.version.cuda is None:
        assert "CPU build" in err
    assert list(tmp_path.iterdir()) == [records]  # no empty .partial/


# --- R17: train's output and options checked before any work -------------------------------

def test_train_refuses_a_file_as_run_folder_and_an_infinite_ssl_weight(tmp_path: Path) -> None:
    ds = make_fake_dataset(tmp_path / "ds", n_records=20)
    afile = tmp_path / "afile"
    afile.write_text("x")
    base = ["train", ds, "--config", "tiny", "--epochs", 1, "-q"]
    one_line_error(*invoke(*base, "-o", afile)[::2], "not a folder")
    one_line_error(*invoke(*base, "-o", "/proc/run")[::2], "cannot write here: /proc")
    assert afile.read_text() == "x"
    for bad in (math.inf, math.nan, -1):
        one_line_error(*invoke(*base, "-o", tmp_path / "run", "--ssl-weight", bad)[::2],
                       "ssl")
    one_line_error(*invoke(*base, "-o", tmp_path / "run", "--lr", "inf")[::2], "learning rate")
    assert not (tmp_path / "run").exists()
