import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.model.batch import example_batch
from ecgmoe_cli.model.config import get_config
from ecgmoe_cli.model.ecgmoe import EcgMoe
from ecgmoe_cli.model.lora import lora_layers
from ecgmoe_cli.signal.spec import PreprocessSpec
from ecgmoe_cli.tasks import TASKS
from ecgmoe_cli.weights.store import load_model, save_adapter, save_model

TINY = get_config("tiny")
SPEC = PreprocessSpec()


def _trained(seed: int = 0) -> EcgMoe:
    torch.manual_seed(seed)
    model = EcgMoe(TINY, [TASKS["sex"], TASKS["arrhythmia"], TASKS["age"]]).eval()
    with torch.no_grad():
        for layer in lora_layers(model):
            for p in layer.lora_B.values():
                p.normal_()
    model.heads["sex"].temperature = 1.7
    model.heads["age"].target_mean = 42.0
    return model


def test_round_trip_restores_outputs_spec_and_calibration(tmp_path: Path) -> None:
    model = _trained()
    save_model(model, SPEC, tmp_path, {"sex": {"f1": 0.5}})
    loaded, spec, meta = load_model(tmp_path)
    b = example_batch(TINY, 3)
    want, got = model.predict(b), loaded.predict(b)
    assert set(got) == set(want)
    assert all(torch.allclose(want[k], got[k], atol=1e-6) for k in want)
    assert spec == SPEC and loaded.config == TINY
    assert loaded.heads["sex"].temperature == 1.7
    assert meta["adapters"]["sex"]["metrics"]["f1"] == 0.5
    only, _, _ = load_model(tmp_path, tasks=["age"])
    assert list(only.tasks) == ["age"]
    with pytest.raises(EcgMoeError, match="no adapter"):
        load_model(tmp_path, tasks=["potassium"])
    assert not list(tmp_path.rglob(".*"))  # no temporary files left behind


def test_adapter_file_holds_only_its_tensors(tmp_path: Path) -> None:
    model = _trained()
    save_model(model, SPEC, tmp_path)
    keys = set(load_file(tmp_path / "adapters" / "sex.safetensors"))
    assert keys == set(model.adapter_keys("sex"))
    adapter = (".lora_A.sex", ".lora_B.sex")
    assert all(k.startswith("heads.sex.") or k.endswith(adapter) for k in keys)
    backbone = set(load_file(tmp_path / "backbone.safetensors"))
    assert not any("lora_" in k or k.startswith("heads.") for k in backbone)


def test_adapter_from_another_backbone_is_refused(tmp_path: Path) -> None:
    save_model(_trained(0), SPEC, tmp_path)
    other = _trained(1)
    save_adapter(other, "sex", tmp_path / "other", backbone_hash="0" * 64)
    (tmp_path / "adapters" / "sex.json").write_text(
        (tmp_path / "other" / "adapters" / "sex.json").read_text())
    with pytest.raises(EcgMoeError, match="sex.json.*trained on backbone"):
        load_model(tmp_path)


@pytest.mark.parametrize("damage", ["flip", "truncate", "header", "shape"])
def test_damaged_files_are_refused(tmp_path: Path, damage: str) -> None:
    save_model(_trained(), SPEC, tmp_path)
    path = tmp_path / ("backbone.safetensors" if damage != "shape" else "adapters/sex.json")
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[-5] ^= 0xFF
    elif damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "header":
        data[:8] = (10**9).to_bytes(8, "little")
    else:  # the sidecar claims another rank: the tensors no longer fit
        meta = json.loads(data)
        meta["rank"] = meta["rank"] + 2
        data = bytearray(json.dumps(meta).encode())
    path.write_bytes(bytes(data))
    match = "sex.safetensors.*shape" if damage == "shape" else path.name
    with pytest.raises(EcgMoeError, match=match):
        load_model(tmp_path)


def test_base_adapter_file_is_small(tmp_path: Path) -> None:
    model = EcgMoe(get_config("base"), [TASKS["arrhythmia"]])
    out = save_adapter(model, "arrhythmia", tmp_path, backbone_hash="x")
    assert out.stat().st_size < 1_000_000


def test_adapter_saved_before_anchors_loads_unanchored(tmp_path: Path) -> None:
    """An rr_interval adapter whose JSON predates anchors keeps predicting as it was trained."""
    torch.manual_seed(0)
    model = EcgMoe(TINY, [TASKS["rr_interval"]]).eval()
    save_model(model, SPEC, tmp_path)
    sidecar = tmp_path / "adapters" / "rr_interval.json"
    meta = json.loads(sidecar.read_text())
    assert meta["anchor"] == "mean_rr_ms"
    loaded, _, _ = load_model(tmp_path)
    assert loaded.heads["rr_interval"].anchor == "mean_rr_ms"
    del meta["anchor"]
    sidecar.write_text(json.dumps(meta))
    old, _, _ = load_model(tmp_path)
    assert old.heads["rr_interval"].anchor == ""
