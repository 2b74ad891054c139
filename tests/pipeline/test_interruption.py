"""Interruptions: SIGINT and SIGKILL during `train` and `preprocess`, then --resume / a rerun.

Nothing half-written may appear under a final name, and the rerun loses and repeats nothing.
(`predict` interruptions are tested in test_predict.py.)
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from run_cli import assert_interrupted_cleanly, ecgmoe, interrupt

from ecgmoe_cli.training.checkpoints import latest_checkpoint

# ---- train: SIGINT / SIGKILL, then --resume ------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_train_interrupted_then_resumed_loses_no_epoch(tiny_dataset: Path, tmp_path: Path,
                                                        sig: int) -> None:
    run = tmp_path / "run"
    args = ["train", tiny_dataset, "-o", run, "--config", "tiny", "--epochs", "2",
            "--batch-size", "8", "--quiet"]
    first = run / "checkpoints" / "epoch-0001.json"
    r = interrupt(args, first.is_file, sig, delay=0.05)  # early in epoch 2
    assert_interrupted_cleanly(r, sig)

    # nothing half-written under a final name: every committed checkpoint loads, no weights yet
    epoch, _, meta = latest_checkpoint(run / "checkpoints")
    assert epoch == 1 and meta["epoch"] == 1
    assert not (run / "weights" / "backbone.json").exists()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["epoch"] for ln in lines][: epoch] == list(range(1, epoch + 1))

    done = ecgmoe(*args, "--resume", "--json")
    assert done.returncode == 0, done.stderr[-800:]
    assert json.loads(done.stdout)["epochs_run"] == 2
    epochs = [json.loads(ln)["epoch"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]  # no duplicate, none lost
    from ecgmoe_cli.weights.store import load_model

    load_model(run / "weights")


def test_resume_tolerates_a_half_written_metrics_line(tmp_path: Path) -> None:
    """A kill (or a full disk) in the middle of appending to metrics.jsonl leaves half a line;
    resuming from the epoch-1 checkpoint must drop it, not crash on it."""
    from ecgmoe_cli.training.checkpoints import truncate_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 1, "train_loss": 0.9}\n{"epoch": 2, "train_loss": 0.5, "train_pa')
    truncate_metrics(path, 1)
    assert [json.loads(ln)["epoch"] for ln in path.read_text().splitlines()] == [1]


# ---- preprocess: SIGINT / SIGKILL, then --overwrite -------------------------------------------

@pytest.fixture(scope="module")
def many_records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough small good records that preprocess runs for a few seconds."""
    from broken_inputs import good_wfdb_12lead

    folder = tmp_path_factory.mktemp("many") / "in"
    folder.mkdir()
    first = good_wfdb_12lead(folder)
    for i in range(150):
        for f in first.files:
            target = folder / f.name.replace("good_12lead", f"rec{i:03d}")
            text = f.read_bytes().replace(b"good_12lead", f"rec{i:03d}".encode())
            target.write_bytes(text)
    for f in first.files:
        f.unlink()
    return folder


def _dataset_records(path: Path) -> list[str]:
    from ecgmoe_cli.io.dataset import open_dataset

    ds = open_dataset(path)
    ok = ds.index[ds.index["status"] == "ok"]
    assert not ok.duplicated(subset=["record", "window"]).any()
    return sorted(set(ok["record"]))


def _started(out: Path) -> Callable[[], bool]:
    """True once preprocess has written a record into its temporary dataset beside OUT."""
    def ready() -> bool:
        for p in out.parent.iterdir():
            arr = p / "signals.npy"
            if out.name in p.name and p != out and arr.is_file() and arr.stat().st_size > 128:
                return True
        return False

    return ready


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_preprocess_interrupted_leaves_no_dataset_and_rerun_completes(
        many_records: Path, tmp_path: Path, sig: int) -> None:
    out = tmp_path / "ds"
    r = interrupt(["preprocess", many_records, "-o", out, "--quiet"], _started(out), sig,
                  delay=0.0)
    assert_interrupted_cleanly(r, sig)
    assert not out.exists(), "a half dataset under the final name"
    done = ecgmoe("preprocess", many_records, "-o", out, "--quiet", "--overwrite")
    assert done.returncode == 0, done.stderr[-800:]
    assert _dataset_records(out) == [f"rec{i:03d}" for i in range(150)]


def test_preprocess_overwrite_interrupted_keeps_the_old_dataset(many_records: Path,
                                                                tmp_path: Path) -> None:
    out = tmp_path / "ds"
    small = tmp_path / "small"
    small.mkdir()
    for f in sorted(many_records.iterdir())[:4]:  # rec000 and rec001
        (small / f.name).symlink_to(f)
    assert ecgmoe("preprocess", small, "-o", out, "--quiet").returncode == 0
    r = interrupt(["preprocess", many_records, "-o", out, "--quiet", "--overwrite"],
                  _started(out), signal.SIGKILL, delay=0.0)
    assert_interrupted_cleanly(r, signal.SIGKILL)
    assert _dataset_records(out) == ["rec000", "rec001"]  # the old one, whole
