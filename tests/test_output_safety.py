"""Nothing a user has is replaced, and every failure is said (issue 24, items 1-2, 8-9; R1, R2,
R13, R17): each case ends in one line and a non-zero exit, with nothing left behind."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from fakes import TINY_SPEC, make_fake_dataset
from typer.testing import CliRunner

from ecgmoe_cli import weights
from ecgmoe_cli.cli import app
from ecgmoe_cli.model.config import EcgMoeConfig
from ecgmoe_cli.model.ecgmoe import EcgMoe
from ecgmoe_cli.signal.spec import PreprocessSpec
from ecgmoe_cli.tasks import get_task

CSV = ["--fs", "250", "--leads", "I,II"]


def _cli(*args: object) -> tuple[int, str, str]:
    r = CliRunner().invoke(app, [str(a) for a in args])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exc_info
    return r.exit_code, r.stdout, r.stderr


def _one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 1, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under root with its bytes (None for a folder): what must not change."""
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes()
            for p in sorted(root.rglob("*"))}


def _csv_record(path: Path, bpm: float = 75) -> Path:
    t = np.arange(2500) / 250
    beat = np.exp(-((t[:, None] - np.arange(0.2, 10, 60 / bpm)) / 0.01) ** 2).sum(1)
    beat += 0.1 * np.sin(2 * np.pi * 0.3 * t)  # not flat between beats
    beat += np.random.default_rng(int(bpm)).normal(0, 0.02, t.size)
    np.savetxt(path, np.stack([beat, 0.8 * beat], 1), delimiter=",", header="I,II",
               comments="", fmt="%.4f")
    return path


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights")
    spec = PreprocessSpec()
    model = EcgMoe(EcgMoeConfig.from_spec("tiny", spec), [get_task("sex"), get_task("rhythm")])
    weights.save_model(model, spec, path)
    return path


@pytest.fixture
def records(tmp_path: Path) -> Path:
    root = tmp_path / "records"
    root.mkdir()
    for i in range(2):
        _csv_record(root / f"good{i}.csv", 60 + 20 * i)
    return root


def _predict(inp: Path, out: Path, w: Path, *extra: object) -> tuple[int, str, str]:
    return _cli("predict", inp, "-o", out, "--weights", w, "--workers", 1, *CSV, *extra)


# --- item 1: finetune never writes into the shipped weights --------------------------------

def test_finetune_without_output_writes_a_new_run_folder_not_the_shipped_weights(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ecgmoe_cli.weights_meta as wm
    from ecgmoe_cli.training import runs

    shipped = tmp_path / "pkg" / "weights"
    torch.manual_seed(0)
    weights.save_backbone(EcgMoe(EcgMoeConfig.from_spec("tiny", TINY_SPEC)), TINY_SPEC, shipped)
    monkeypatch.setattr(wm, "default_weights_dir", lambda: shipped)
    monkeypatch.setattr(runs, "default_weights_dir", lambda: shipped)
    ds = make_fake_dataset(tmp_path / "ds", n_records=40)
    before = _tree(shipped)
    monkeypatch.chdir(tmp_path)
    args = ["finetune", "--task", "sex", "--data", ds, "--epochs", 1, "--batch-size", 8, "-q"]
    code, out, err = _cli(*args)
    assert code == 0, err
    assert _tree(shipped) == before  # not one byte of the shipped weights changed
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("finetune-sex-") and f"runs/{run.name}" in err
    assert (run / "adapters" / "sex.json").is_file() and (run / "backbone.json").is_file()
    _one_line_error(*_cli(*args, "-o", shipped)[::2], "shipped weights")
    _one_line_error(*_cli(*args, "--resume")[::2], "--resume needs -o")
    assert _tree(shipped) == before


# --- item 2, R2: predict -o replaces only a report, only with --overwrite ------------------

@pytest.mark.parametrize("name", ["notes.txt", "labels_keep.csv", "out.pq", "fake.parquet"])
def test_predict_refuses_an_output_file_that_is_not_a_report(
        name: str, records: Path, tiny_weights: Path, tmp_path: Path) -> None:
    target = tmp_path / name
    target.write_text("hi\n")
    for extra in ([], ["--overwrite"], ["--resume"]):
        _one_line_error(*_predict(records, target, tiny_weights, *extra)[::2],
                        "not a Parquet report")
        assert target.read_text() == "hi\n"


def test_predict_refuses_a_folder_that_is_not_a_report_dataset(
        records: Path, tiny_weights: Path, tmp_path: Path) -> None:
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    _one_line_error(*_predict(records, folder, tiny_weights, "--overwrite")[::2],
                    "not a report dataset")
    assert _tree(folder) == {"notes.txt": b"keep me"}


@pytest.mark.parametrize("out_name", ["r.parquet", "results"])
def test_predict_replaces_a_report_only_with_overwrite(
        out_name: str, records: Path, tiny_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / out_name
    assert _predict(records, out, tiny_weights, "-q")[0] == 0
    before = _tree(out) if out.is_dir() else out.read_bytes()
    _one_line_error(*_predict(records, out, tiny_weights, "-q")[::2], "--overwrite")
    assert (_tree(out) if out.is_dir() else out.read_bytes()) == before
    code, _, err = _predict(records, out, tiny_weights, "-q", "--overwrite")
    assert code == 0, err and len(pq.read_table(out)) == 2


def test_predict_never_writes_over_its_input(records: Path, tiny_weights: Path) -> None:
    rec = records / "good0.csv"
    before = _tree(records)
    for extra in ([], ["--overwrite"]):
        _one_line_error(*_predict(rec, rec, tiny_weights, *extra)[::2], "is the input")
        _one_line_error(*_predict(rec, records, tiny_weights, *extra)[::2], "holds the input")
    assert _tree(records) == before


# --- R1: preprocess --overwrite never replaces its input or what it did not write ----------

def test_preprocess_overwrite_never_replaces_the_input_or_a_foreign_folder(
        records: Path, tmp_path: Path) -> None:
    (records / "unrelated.txt").write_text("mine")
    before = _tree(tmp_path)
    for out in (records, tmp_path):  # IN itself, a parent of IN
        _one_line_error(*_cli("preprocess", records, "-o", out, "--overwrite", "-q",
                              *CSV)[::2], "input")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "a.txt").write_text("x")
    _one_line_error(*_cli("preprocess", records, "-o", foreign, "--overwrite", "-q",
                          *CSV)[::2], "not a dataset")
    assert _tree(tmp_path) == before | {"foreign": None, "foreign/a.txt": b"x"}
    ds = tmp_path / "ds"
    assert _cli("preprocess", records, "-o", ds, "-q", *CSV)[0] == 0
    assert _cli("preprocess", records, "-o", ds, "-q", "--overwrite", *CSV)[0] == 0


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
    _one_line_error(code, err, "7 record(s) failed", "bad0.csv: empty file")


def test_a_single_file_that_fails_exits_non_zero(tiny_weights: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("")
    _one_line_error(*_predict(bad, tmp_path / "r.parquet", tiny_weights)[::2],
                    "bad.csv: empty file")
    _one_line_error(*_cli("preprocess", bad, "-o", tmp_path / "ds", "--labels", "none",
                          *CSV)[::2],
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
        _one_line_error(*_predict(records, out, tiny_weights)[::2], "cannot write")
        _one_line_error(*_cli("preprocess", records, "-o", out.with_suffix(""), *CSV)[::2],
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
    _one_line_error(*_predict(records, tmp_path / "r.parquet", tiny_weights)[::2],
                    "cannot write the report (No space left on device)")
    monkeypatch.undo()
    monkeypatch.setattr(dataset_writer._NpyAppender, "append", full)
    _one_line_error(*_cli("preprocess", records, "-o", tmp_path / "ds", "--workers", 1,
                          "--labels", "none", *CSV)[::2],
                    "cannot write the dataset (No space left on device)")
    assert _tree(tmp_path) == before  # no .partial/, no part .tmp, no ds.tmp-<pid>


def test_resume_with_other_tasks_is_refused_and_keeps_the_report(
        records: Path, tiny_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.parquet"
    assert _predict(records, out, tiny_weights, "-q")[0] == 0
    before = _tree(tmp_path)
    _one_line_error(*_predict(records, out, tiny_weights, "--resume", "--tasks", "sex")[::2],
                    "cannot resume", "other columns")
    assert _tree(tmp_path) == before  # no .partial/ left


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_says_the_torch_is_a_cpu_build(
        records: Path, tiny_weights: Path, tmp_path: Path) -> None:
    code, _, err = _predict(records, tmp_path / "r.parquet", tiny_weights, "--device", "cuda")
    _one_line_error(code, err, "CUDA is not available")
    if torch.version.cuda is None:
        assert "CPU build" in err
    assert list(tmp_path.iterdir()) == [records]  # no empty .partial/


# --- R17: train's output and options checked before any work -------------------------------

def test_train_refuses_a_file_as_run_folder_and_an_infinite_ssl_weight(tmp_path: Path) -> None:
    ds = make_fake_dataset(tmp_path / "ds", n_records=20)
    afile = tmp_path / "afile"
    afile.write_text("x")
    base = ["train", ds, "--config", "tiny", "--epochs", 1, "-q"]
    _one_line_error(*_cli(*base, "-o", afile)[::2], "not a folder")
    _one_line_error(*_cli(*base, "-o", "/proc/run")[::2], "cannot write here: /proc")
    assert afile.read_text() == "x"
    for bad in (math.inf, math.nan, -1):
        _one_line_error(*_cli(*base, "-o", tmp_path / "run", "--ssl-weight", bad)[::2],
                        "ssl")
    _one_line_error(*_cli(*base, "-o", tmp_path / "run", "--lr", "inf")[::2], "learning rate")
    assert not (tmp_path / "run").exists()
