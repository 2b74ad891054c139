"""Training loop: loss goes down, files appear, resume continues exactly, lead dropout, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fakes import make_fake_dataset, my_cli
from typer.testing import CliRunner

from ecgmoe_cli.io.dataset import open_dataset
from ecgmoe_cli.model.config import EcgMoeConfig
from ecgmoe_cli.model.ecgmoe import EcgMoe
from ecgmoe_cli.training.checkpoints import latest_checkpoint
from ecgmoe_cli.training.ddp import DistInfo
from ecgmoe_cli.training.loop import FitConfig, epoch_rows, fit
from ecgmoe_cli.training.losses import Objective, lead_dropout, set_regression_scaling


@pytest.fixture
def dataset(tiny_dataset):
    """The session's tiny dataset (conftest.py); the tests here only read it."""
    return tiny_dataset


def _fit(ds_path, run_dir, epochs, resume=False, seed=0):
    ds = open_dataset(ds_path)
    torch.manual_seed(seed)
    model = EcgMoe(EcgMoeConfig.from_spec("tiny", ds.spec), ds.tasks)
    train, val = ds.rows(fold=range(1, 9)), ds.rows(fold=9)
    set_regression_scaling(model, ds, train, ds.tasks)
    obj = Objective(model, [t.name for t in ds.tasks], ssl_weight=0.5)
    cfg = FitConfig(epochs=epochs, batch_size=8, lr=3e-3, seed=seed)
    res = fit(model, obj, list(model.parameters()), ds, train, val, ds.tasks, cfg, run_dir,
              DistInfo(), resume=resume, show_progress=False)
    return model, res


def test_a_few_epochs_lower_the_loss_and_write_metrics_and_checkpoint(dataset, tmp_path):
    _fit(dataset, tmp_path / "run", epochs=4)
    lines = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [ln["epoch"] for ln in lines] == [1, 2, 3, 4]
    assert lines[-1]["train_loss"] < lines[0]["train_loss"]
    assert lines[-1]["val_loss"] < lines[0]["val_loss"]
    assert {"sex", "rr_interval", "arrhythmia", "rhythm", "ssl", "balance"} <= set(
        lines[0]["train_parts"])
    epoch, tensors, meta = latest_checkpoint(tmp_path / "run" / "checkpoints")
    assert epoch == 4 and meta["epoch"] == 4
    assert any(k.startswith("optim.") for k in tensors) and "rng.torch" in tensors
    # the best epoch's BatchNorm statistics are kept with its weights
    assert any(k.startswith("best.") and k.endswith("running_mean") for k in tensors)
    assert not list((tmp_path / "run" / "checkpoints").glob("epoch-0003*"))  # older pruned


def test_resume_after_a_kill_continues_at_the_next_epoch_and_matches(dataset, tmp_path,
                                                                     monkeypatch):
    full, _ = _fit(dataset, tmp_path / "full", epochs=3)

    from ecgmoe_cli.io import dataset as dsmod

    calls = {"n": 0}
    real_batch = dsmod.Dataset.batch

    def dying_batch(self, rows):  # the process dies halfway through epoch 3
        calls["n"] += 1
        if calls["n"] == 2 * 4 + 1 + 2 + 2:  # 4 train + 1 val batches per epoch, then 2 more
            raise KeyboardInterrupt
        return real_batch(self, rows)

    monkeypatch.setattr(dsmod.Dataset, "batch", dying_batch)
    with pytest.raises(KeyboardInterrupt):
        _fit(dataset, tmp_path / "cut", epochs=3)
    monkeypatch.setattr(dsmod.Dataset, "batch", real_batch)
    assert latest_checkpoint(tmp_path / "cut" / "checkpoints")[0] == 2

    resumed, res = _fit(dataset, tmp_path / "cut", epochs=3, resume=True, seed=123)
    epochs = [json.loads(ln)["epoch"]
              for ln in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3] and res.epochs_run == 3
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)  # same weights as the run never killed


def test_resume_without_checkpoint_is_a_clear_error(dataset, tmp_path):
    from ecgmoe_cli.errors import EcgMoeError

    with pytest.raises(EcgMoeError, match="nothing to resume"):
        _fit(dataset, tmp_path / "empty", epochs=1, resume=True)


def test_lead_dropout_keeps_subsets_of_recorded_leads():
    g = torch.Generator().manual_seed(0)
    mask = torch.ones(400, 12, dtype=torch.bool)
    mask[:200, 0] = False  # half the samples lack lead I
    batch = {"lead_mask": mask, "signal": torch.ones(400, 12, 5)}
    out = lead_dropout(batch, 0.5, g)
    m = out["lead_mask"]
    assert not (m & ~mask).any() and m.any(1).all()
    assert torch.equal(out["signal"][:, :, 0], m.float())
    kept = m.sum(1)
    assert (kept == 12).sum() > 100 and (kept == 1).sum() > 30 and (kept < 12).sum() > 100
    assert torch.equal(out["lead_mask"], lead_dropout(batch, 0.5,
                                                      torch.Generator().manual_seed(0))["lead_mask"])


def test_epoch_rows_shard_evenly_and_cover_all_rows():
    rows = np.arange(11)
    shards = [epoch_rows(rows, 0, 1, DistInfo(r, 2)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 6
    assert set(np.concatenate(shards)) == set(rows)
    one, two = epoch_rows(rows, 0, 1, DistInfo()), epoch_rows(rows, 0, 2, DistInfo())
    assert not np.array_equal(one, two)


def test_train_command_writes_weights_and_metrics(dataset, tmp_path):
    r = CliRunner().invoke(my_cli(), ["train", str(dataset), "-o", str(tmp_path / "run"),
                                      "--config", "tiny", "--epochs", "2", "--batch-size", "16",
                                      "--quiet", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["epochs_run"] == 2
    weights = tmp_path / "run" / "weights"
    assert (weights / "backbone.safetensors").is_file() and (weights / "backbone.json").is_file()
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2
    from ecgmoe_cli.weights.store import load_model

    model, spec, _ = load_model(weights)
    assert spec == open_dataset(dataset).spec and set(model.tasks) >= {"sex", "rr_interval"}


def test_task_weights_are_checked_and_saved_with_the_weights(dataset, tmp_path):
    base = ["train", str(dataset), "-o", str(tmp_path / "run"), "--config", "tiny",
            "--epochs", "1", "--batch-size", "16", "--quiet"]
    for bad, says in (("sex", "not TASK=W"), ("sex=-1", "not TASK=W"), ("sex=x", "not TASK=W"),
                      ("=2", "not TASK=W"), ("nosuch=2", "nosuch")):
        r = CliRunner().invoke(my_cli(), [*base, "--task-weight", bad])
        assert r.exit_code == 1 and says in r.output, (bad, r.output)
        assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    r = CliRunner().invoke(my_cli(), [*base, "--json", "--task-weight", "sex=3",
                                      "--task-weight", "rhythm=0.5"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["task_weights"] == {"sex": 3.0, "rhythm": 0.5}
    meta = json.loads((tmp_path / "run" / "weights" / "backbone.json").read_text())
    assert meta["metrics"]["task_weights"] == {"sex": 3.0, "rhythm": 0.5}


def test_dense_baseline_trains_by_the_same_recipe(dataset, tmp_path):
    """bench's like-for-like rival: dense FFNs, yet the masked-beat loss, calibration, weights."""
    from ecgmoe_cli.model.moe import DenseFFN, MoE
    from ecgmoe_cli.training.train import train_backbone
    from ecgmoe_cli.weights.store import load_model

    summary = train_backbone(dataset, tmp_path / "run", "tiny", FitConfig(epochs=1, batch_size=16),
                             progress=False, dense=True)
    parts = json.loads((tmp_path / "run" / "metrics.jsonl").read_text())["train_parts"]
    assert "ssl" in parts and parts["balance"] == 0.0  # no router to balance
    model, _, _ = load_model(summary["weights"])
    assert model.config.dense_moe and model.config.lora_rank == 0
    kinds = {type(m) for m in model.modules()}
    assert DenseFFN in kinds and MoE not in kinds


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_one_line_error(dataset, tmp_path):
    r = CliRunner().invoke(my_cli(), ["train", str(dataset), "-o", str(tmp_path / "run"),
                                      "--config", "tiny", "--device", "cuda"])
    assert r.exit_code == 1 and "CUDA is not available" in r.output
    assert "Traceback" not in r.output


def test_fresh_run_over_checkpoints_is_refused(dataset, tmp_path):
    from ecgmoe_cli.errors import EcgMoeError

    _fit(dataset, tmp_path / "run", epochs=1)
    with pytest.raises(EcgMoeError, match="--resume"):
        _fit(dataset, tmp_path / "run", epochs=1)


def test_early_stopping_keeps_the_best_epoch(dataset, tmp_path, monkeypatch):
    from ecgmoe_cli.training import loop

    val_losses = iter([1.0, 0.5, 0.7, 0.9, 0.4])  # best at 2, then 2 bad epochs: stop at 4
    snapshots = {}
    real_validate = loop._validate

    def fake_validate(objective, *args):
        real_validate(objective, *args)
        epoch = len(snapshots) + 1
        snapshots[epoch] = {k: v.clone() for k, v in objective.model.state_dict().items()}
        return next(val_losses), {}

    monkeypatch.setattr(loop, "_validate", fake_validate)
    ds = open_dataset(dataset)
    torch.manual_seed(0)
    model = EcgMoe(EcgMoeConfig.from_spec("tiny", ds.spec), ds.tasks)
    model.mark_trainable("sex")
    obj = Objective(model, ["sex"])
    res = fit(model, obj, model.trainable_parameters("sex"), ds, ds.rows(fold=range(1, 9)),
              ds.rows(fold=9), [ds.tasks[0]], FitConfig(epochs=5, batch_size=8, patience=2),
              tmp_path / "run", DistInfo(), show_progress=False)
    assert res.epochs_run == 4 and res.best_epoch == 2 and res.best_val_loss == 0.5
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, snapshots[2][k], msg=k)  # best epoch's adapter restored


def test_anchored_regression_is_scaled_by_its_residual(dataset):
    """rr_interval learns target - detected RR: its scale is that residual's spread."""
    ds = open_dataset(dataset)
    model = EcgMoe(EcgMoeConfig.from_spec("tiny", ds.spec), ds.tasks)
    train = ds.rows(fold=range(1, 9))
    scaling = set_regression_scaling(model, ds, train, ds.tasks)
    y = ds.targets(train, [model.tasks["rr_interval"]])["rr_interval"]
    assert y.std() > 100  # the fake records' RR is 550 or 1000 ms...
    mean, scale = scaling["rr_interval"]
    assert mean == pytest.approx(y.mean()) and scale == 1.0  # ...and the detected RR is exact
    assert model.heads["rr_interval"].anchor == "mean_rr_ms"


def test_train_mixes_datasets_and_starts_from_a_saved_backbone(dataset, tmp_path):
    """Real corpora beside the synthetic one train as one; --init copies a backbone in."""
    import pandas as pd

    from ecgmoe_cli.weights.store import load_model

    second = make_fake_dataset(tmp_path / "second", n_records=20, seed=1)
    first_run = tmp_path / "first"
    r = CliRunner().invoke(my_cli(), ["train", str(dataset), "-o", str(first_run), "--config",
                                      "tiny", "--epochs", "1", "--batch-size", "16", "--quiet"])
    assert r.exit_code == 0, r.output
    start, _, _ = load_model(first_run / "weights", tasks=[])
    # next to no learning (lr 1e-12): the run's backbone is the --init one
    r = CliRunner().invoke(my_cli(), ["train", str(dataset), str(second), "-o",
                                      str(tmp_path / "mix"), "--config", "tiny", "--epochs", "1",
                                      "--batch-size", "16", "--lr", "1e-12", "--ssl-weight", "0",
                                      "--init", str(first_run / "weights"), "--json"])
    assert r.exit_code == 0, r.output
    lines = (tmp_path / "mix" / "metrics.jsonl").read_text().splitlines()
    n_train = sum(int(((pd.read_parquet(d / "index.parquet")["fold"] <= 8)
                       & (pd.read_parquet(d / "index.parquet")["status"] == "ok")).sum())
                  for d in (dataset, second))
    assert json.loads(lines[0])["train_windows"] == n_train
    mixed, _, _ = load_model(tmp_path / "mix" / "weights", tasks=[])
    a, b = start.state_dict(), mixed.state_dict()
    keys = [k for k in start.backbone_keys() if "running" not in k and "num_batches" not in k]
    assert keys and all(torch.allclose(a[k], b[k], atol=1e-6) for k in keys)
    fresh = EcgMoe(start.config)  # and not a fresh initialisation
    assert not all(torch.allclose(fresh.state_dict()[k], b[k], atol=1e-6) for k in keys)
