"""Weights on disk: safetensors + JSON sidecars, hash-checked; nothing is ever unpickled.

```
DIR/backbone.safetensors + backbone.json   config, spec, tasks, backbone_hash, metrics
DIR/adapters/<task>.safetensors + .json    task, rank, alpha, thresholds, temperature,
                                           target_mean/scale, metrics, backbone_hash, tensors_hash
DIR/heads/beat_class.safetensors + .json   the per-beat head: classes, config, metrics,
                                           backbone_hash, tensors_hash
```
`backbone_hash` is the sha256 of the backbone tensors (names, dtypes, shapes, bytes): an adapter
trained on another backbone is refused, and a backbone whose bytes changed no longer matches its
own JSON. Every write goes to a temporary file renamed into place, so a crash never leaves half
a file under the real name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.files import atomic_write_json
from ecgmoe_cli.model.beat_head import BeatHead, BeatHeadConfig
from ecgmoe_cli.model.config import EcgMoeConfig
from ecgmoe_cli.model.ecgmoe import EcgMoe
from ecgmoe_cli.model.lora import lora_layers
from ecgmoe_cli.signal.beat_features import BEAT_FEATURES
from ecgmoe_cli.signal.spec import PreprocessSpec
from ecgmoe_cli.tasks import AAMI_CLASSES, task_to_dict
from ecgmoe_cli.weights.meta import (
    ADAPTERS,
    BACKBONE,
    BEAT_HEAD,
    HEADS,
    adapter_task,
    beat_head_problem,
    parse_sidecar,
    read_backbone_meta,
    read_json,
    read_plan,
)
from ecgmoe_cli.weights.tensors import (
    budget,
    check_shapes,
    header_shapes,
    read_tensors,
    tensors_hash,
    write_tensors,
)

FORMAT_VERSION = 1


def backbone_tensors(model: EcgMoe) -> dict[str, torch.Tensor]:
    state = model.state_dict()
    return {k: state[k] for k in model.backbone_keys()}


def adapter_tensors(model: EcgMoe, task: str) -> dict[str, torch.Tensor]:
    state = model.state_dict()
    return {k: state[k] for k in model.adapter_keys(task)}


def _check_not_merged(model: EcgMoe) -> None:
    if any(layer.merged for layer in lora_layers(model)):
        raise EcgMoeError("unmerge the LoRA adapter before saving: the backbone would hold it")
    if getattr(model, "bn_folded", False):
        raise EcgMoeError("this model was folded for inference (BatchNorm in the convs); "
                          "save the model it was loaded from instead")


def save_backbone(model: EcgMoe, spec: PreprocessSpec, directory: Path,
                  metrics: dict[str, Any] | None = None) -> str:
    """Write backbone.safetensors + backbone.json; returns the backbone hash."""
    _check_not_merged(model)
    directory = Path(directory)
    tensors = backbone_tensors(model)
    digest = tensors_hash(tensors)
    write_tensors(directory / f"{BACKBONE}.safetensors", tensors)
    atomic_write_json(directory / f"{BACKBONE}.json", {
        "format": "ecgmoe-backbone", "version": FORMAT_VERSION,
        "config": model.config.to_dict(), "spec": spec.to_dict(),
        "tasks": [task_to_dict(t) for t in model.tasks.values()],
        "backbone_hash": digest, "metrics": metrics or {}})
    return digest


def save_adapter(model: EcgMoe, task: str, directory: Path, backbone_hash: str,
                 metrics: dict[str, Any] | None = None) -> Path:
    """Write adapters/<task>.safetensors (only that task's LoRA + head tensors) and its JSON."""
    _check_not_merged(model)
    if task not in model.tasks:
        raise EcgMoeError(f"model has no task {task!r}")
    tensors = adapter_tensors(model, task)
    rank, alpha = model.adapter_rank(task)
    out = Path(directory) / ADAPTERS / f"{task}.safetensors"
    write_tensors(out, tensors)
    atomic_write_json(out.with_suffix(".json"), {
        "format": "ecgmoe-adapter", "version": FORMAT_VERSION,
        "task": task_to_dict(model.tasks[task]), "rank": rank, "alpha": alpha,
        **model.heads[task].metadata(),  # type: ignore[operator]
        "metrics": metrics or {}, "backbone_hash": backbone_hash,
        "tensors_hash": tensors_hash(tensors)})
    return out


def save_model(model: EcgMoe, spec: PreprocessSpec, directory: Path,
               metrics: dict[str, Any] | None = None) -> str:
    """Backbone and every task's adapter; `metrics` may hold per-task dicts under task names."""
    metrics = metrics or {}
    digest = save_backbone(model, spec, directory, metrics)
    for task in model.tasks:
        save_adapter(model, task, directory, digest, metrics.get(task))
    return digest


def load_model(directory: Path, tasks: Sequence[str] | None = None, device: str = "cpu"
               ) -> tuple[EcgMoe, PreprocessSpec, dict[str, Any]]:
    """The backbone and every adapter present (or only `tasks`), ready for eval.

    meta is backbone.json plus "adapters": {task: adapter JSON}.
    """
    directory = Path(directory)
    meta = read_backbone_meta(directory)
    spec, wanted = read_plan(directory, tasks, meta)  # the sidecars: errors before tensors load
    config = parse_sidecar(lambda: EcgMoeConfig.from_dict(meta["config"]),
                           directory / f"{BACKBONE}.json", "backbone")
    st_path = directory / f"{BACKBONE}.safetensors"
    shapes = header_shapes(st_path)
    with budget(st_path, "the model backbone.json describes"):
        model = EcgMoe(config)
    check_shapes(model, shapes, model.backbone_keys(), st_path)
    model.load_state_dict(read_tensors(st_path, meta["backbone_hash"]), strict=False)
    meta["adapters"] = {t.name: load_adapter(model, directory, t.name, meta["backbone_hash"])
                        for t in wanted}
    return model.to(device).eval(), spec, meta


def _alpha(value: Any) -> float:
    """An adapter's LoRA alpha: a finite number > 0 (NaN gave NaN probabilities and rc 0)."""
    alpha = float(value)
    if not 0 < alpha < math.inf:
        raise EcgMoeError(f"alpha must be a finite number > 0, got {value}")
    return alpha


def load_adapter(model: EcgMoe, directory: Path, task: str, backbone_hash: str | None = None
                 ) -> dict[str, Any]:
    """Add adapters/<task> to `model`; refuses one trained on another backbone. Returns its JSON.

    `backbone_hash` is the model's (verified) backbone hash; computed when not given.
    """
    json_path = Path(directory) / ADAPTERS / f"{task}.json"
    ameta = read_json(json_path)
    digest = backbone_hash or tensors_hash(backbone_tensors(model))
    if ameta.get("backbone_hash") != digest:
        trained_on = str(ameta.get("backbone_hash"))[:12]
        raise EcgMoeError(f"adapter was trained on backbone {trained_on}, not on this one "
                          f"({digest[:12]})", json_path)
    spec_task = adapter_task(ameta, task, json_path)
    rank, alpha, hashed = parse_sidecar(
        lambda: (int(ameta["rank"]), _alpha(ameta["alpha"]), str(ameta["tensors_hash"])),
        json_path, "adapter")
    st_path = json_path.with_suffix(".safetensors")
    shapes = header_shapes(st_path)
    try:
        with budget(st_path, f"the adapter {task}.json describes"):
            model.add_task(spec_task, rank, alpha)
    except EcgMoeError:
        if task not in model.tasks:  # a refusal may stop add_task half-way
            for layer in lora_layers(model.fusion):
                layer.remove_adapter(task)
        raise
    try:
        check_shapes(model, shapes, model.adapter_keys(task), st_path)
        try:
            # an adapter saved before anchors existed was trained without one
            model.heads[task].set_metadata({"anchor": "", **ameta})  # type: ignore[operator]
        except EcgMoeError as e:
            raise EcgMoeError(str(e), json_path) from None
        tensors = read_tensors(st_path, hashed)
    except EcgMoeError:
        model.remove_task(task)  # leave the model as it was
        raise
    model.load_state_dict(tensors, strict=False)
    return ameta


def save_beat_head(head: BeatHead, directory: Path, backbone_hash: str,
                   metrics: dict[str, Any] | None = None) -> Path:
    """Write heads/beat_class.safetensors and its JSON (with the backbone it was trained on)."""
    tensors = dict(head.state_dict())
    out = Path(directory) / HEADS / f"{BEAT_HEAD}.safetensors"
    write_tensors(out, tensors)
    atomic_write_json(out.with_suffix(".json"), {
        "format": "ecgmoe-beat-head", "version": FORMAT_VERSION, "classes": list(AAMI_CLASSES),
        "features": list(BEAT_FEATURES), "config": head.config.to_dict(), "metrics": metrics or {},
        "backbone_hash": backbone_hash, "tensors_hash": tensors_hash(tensors)})
    return out


def load_beat_head(directory: Path, backbone_hash: str, device: str = "cpu"
                   ) -> tuple[BeatHead, dict[str, Any]]:
    """heads/beat_class of `directory`, refused unless trained on `backbone_hash`."""
    problem = beat_head_problem(directory, backbone_hash)
    if problem:
        raise EcgMoeError(problem)
    json_path = Path(directory) / HEADS / f"{BEAT_HEAD}.json"
    meta = read_json(json_path)
    config, hashed = parse_sidecar(
        lambda: (BeatHeadConfig(**meta["config"]), str(meta["tensors_hash"])), json_path,
        "beat head")
    if list(meta.get("classes", [])) != list(AAMI_CLASSES):
        raise EcgMoeError(f"beat head classes {meta.get('classes')} are not "
                          f"{list(AAMI_CLASSES)}", json_path)
    st_path = json_path.with_suffix(".safetensors")
    shapes = header_shapes(st_path)
    with budget(st_path, "the beat head its JSON describes"):
        head = BeatHead(config)
    expected = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    if shapes != expected:
        raise EcgMoeError("beat head tensors do not fit its config", st_path)
    head.load_state_dict(read_tensors(st_path, hashed))
    problem = head.index_problem()
    if problem:
        raise EcgMoeError(problem, st_path)
    return head.to(device).eval(), meta
