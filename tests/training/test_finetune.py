"""`ecgmoe finetune`: only the adapter and head train; calibration lands in the adapter JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fakes import TASK_NAMES, TINY_SPEC, fake_record, make_fake_dataset, my_cli
from safetensors.torch import load_file
from typer.testing import CliRunner

from ecgmoe_cli.io.dataset_writer import DatasetWriter
from ecgmoe_cli.model.config import EcgMoeConfig
from ecgmoe_cli.model.ecgmoe import EcgMoe
from ecgmoe_cli.model.rhythm_evidence import N_RR_FEATURES, RhythmEvidence
from ecgmoe_cli.pipeline.preprocess import add_record
from ecgmoe_cli.tasks import get_task, user_task
from ecgmoe_cli.weights import store


@pytest.fixture
def backbone(tiny_backbone):
    """The session's tiny backbone (conftest.py); finetune only reads it."""
    return tiny_backbone


def _finetune(args):
    r = CliRunner().invoke(my_cli(), ["finetune", *args, "--epochs", "3", "--batch-size", "8",
                                      "--quiet", "--json"])
    return r


def test_finetune_trains_only_adapter_and_head(tmp_path, backbone, tiny_dataset):
    ds = tiny_dataset
    out = tmp_path / "out"
    r = _finetune(["--task", "sex", "--data", str(ds), "--backbone", str(backbone), "-o",
                   str(out), "--rank", "2", "--alpha", "4"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["task"] == "sex" and 1 <= summary["epochs_run"] <= 3
    before = load_file(str(backbone / "backbone.safetensors"))
    after = load_file(str(out / "backbone.safetensors"))
    assert before.keys() == after.keys()
    for k in before:
        torch.testing.assert_close(before[k], after[k], rtol=0, atol=0, msg=k)
    meta = json.loads((out / "adapters" / "sex.json").read_text())
    assert meta["rank"] == 2 and meta["alpha"] == 4.0
    assert len(meta["thresholds"]) == 1 and 0 <= meta["thresholds"][0] <= 1
    assert meta["temperature"] > 0 and meta["temperature"] != 1.0
    assert "auroc" in meta["metrics"]["validation"]["labels"]["female"]
    tensors = load_file(str(out / "adapters" / "sex.safetensors"))
    assert all(k.startswith("heads.sex.") or ".lora_" in k for k in tensors)
    lora_b = [v for k, v in tensors.items() if ".lora_B." in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)  # B starts at zero: it trained
    model, _, _ = store.load_model(out, tasks=["sex"])  # refused if the backbone differed
    assert model.heads["sex"].temperature == pytest.approx(meta["temperature"])


def test_user_task_from_a_labels_csv_column(tmp_path, backbone):
    k = user_task("k_high", "binary")
    rng = np.random.default_rng(0)
    with DatasetWriter(tmp_path / "ds", TINY_SPEC, [*map(get_task, TASK_NAMES), k]) as w:
        for i in range(40):
            prep, labels = fake_record(i, rng)
            add_record(w, prep, [labels[0] | {"y_k_high__positive": float(i % 2)}],
                       fold=(i // 4) % 10 + 1)
    r = _finetune(["--task", "k_high", "--kind", "binary", "--data", str(tmp_path / "ds"),
                   "--backbone", str(backbone), "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "out" / "adapters" / "k_high.json").read_text())
    assert meta["task"]["kind"] == "binary" and meta["task"]["labels"] == ["positive"]


def test_task_without_columns_is_a_clear_error(tmp_path, backbone):
    ds = make_fake_dataset(tmp_path / "ds", n_records=8)
    r = _finetune(["--task", "potassium", "--data", str(ds), "--backbone", str(backbone)])
    assert r.exit_code == 1 and "no target columns" in r.output
    r = _finetune(["--task", "nosuch", "--data", str(ds), "--backbone", str(backbone)])
    assert r.exit_code == 1 and "--kind" in r.output


def test_cached_features_give_the_full_models_outputs(tmp_path):
    """Finetune trains on cached backbone features: decoding them must equal a full forward."""
    from ecgmoe_cli.io.dataset import open_dataset
    from ecgmoe_cli.model.batch import to_torch
    from ecgmoe_cli.training.encoded import (
        DecodeObjective,
        EncodedDataset,
        cached_features,
        features_to_torch,
    )

    torch.manual_seed(1)
    ds = open_dataset(make_fake_dataset(tmp_path / "ds", n_records=12))
    tasks = ["hypertrophy", "rr_interval", "rhythm"]  # anchored and RR-evidence heads ride too
    model = EcgMoe(EcgMoeConfig.from_spec("tiny", TINY_SPEC), [get_task(t) for t in tasks])
    model.heads["rhythm"].evidence = RhythmEvidence(
        "afib", (0.0,) * N_RR_FEATURES, (1.0,) * N_RR_FEATURES, (0.5,) * N_RR_FEATURES, -1.0,
        0.7, 1.3, 0.2)
    with torch.no_grad():  # a non-zero adapter, so the check covers LoRA too
        for n, p in model.named_parameters():
            if "lora_b" in n.lower():
                p.normal_()
    rows = ds.rows()
    enc = EncodedDataset(model, ds, rows, batch_size=5, device="cpu")
    pick = rows[[3, 0, 7]]
    full, _ = model(to_torch(ds.batch(pick)), tasks=tasks)
    obj = DecodeObjective(model, tasks)
    f = features_to_torch(enc.batch(pick), "cpu")
    cached = model.decode(cached_features(f), tasks)
    for t in tasks:
        torch.testing.assert_close(cached[t], full[t])
    assert torch.isfinite(obj(f, {})[0])


def test_several_tasks_in_one_run_share_one_encoding(tmp_path, backbone, monkeypatch):
    from ecgmoe_cli.training import encoded as enc_mod

    calls = []
    real_init = enc_mod.EncodedDataset.__init__

    def counting_init(self, *a, **kw):
        calls.append(1)
        real_init(self, *a, **kw)

    monkeypatch.setattr(enc_mod.EncodedDataset, "__init__", counting_init)
    ds = make_fake_dataset(tmp_path / "ds", n_records=40)  # its own: no features cached before
    out = tmp_path / "out"
    r = _finetune(["--task", "sex,rhythm", "--data", str(ds), "--backbone", str(backbone),
                   "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert [a["task"] for a in json.loads(r.stdout)["adapters"]] == ["sex", "rhythm"]
    assert (out / "adapters" / "sex.safetensors").is_file()
    assert (out / "adapters" / "rhythm.safetensors").is_file()
    assert len(calls) == 1


def test_a_misspelt_task_lists_the_known_ones(tmp_path, backbone):
    """Issue 24 item 12: `--task hypertrophi` names the task meant and every known task."""
    ds = make_fake_dataset(tmp_path / "ds", n_records=8)
    r = _finetune(["--task", "hypertrophi", "--data", str(ds), "--backbone", str(backbone),
                   "-o", str(tmp_path / "out")])
    assert r.exit_code == 1 and "did you mean 'hypertrophy'?" in r.output
    assert "known tasks: " in r.output and "rr_interval" in r.output
    assert not (tmp_path / "out").exists()


def test_calibration_on_a_small_fold_is_warned(tmp_path, backbone, tiny_dataset):
    """Issue 24 item 5: thresholds fitted on the 3 windows of fold 9 with a sex label warn."""
    ds = tiny_dataset
    r = _finetune(["--task", "sex", "--data", str(ds), "--backbone", str(backbone), "-o",
                   str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert "warning: calibration on fold 9: sex: only 3 windows scored" in r.stderr
    assert json.loads(r.stdout)["validation"]["warnings"]
