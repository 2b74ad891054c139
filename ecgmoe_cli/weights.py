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

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch.overrides import TorchFunctionMode

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.model.beat_head import BeatHead, BeatHeadConfig
from ecgmoe_cli.model.config import EcgMoeConfig
from ecgmoe_cli.model.ecgmoe import EcgMoe
from ecgmoe_cli.model.lora import lora_layers
from ecgmoe_cli.signal.spec import PreprocessSpec
from ecgmoe_cli.tasks import AAMI_CLASSES, task_to_dict
from ecgmoe_cli.weights_meta import (
    ADAPTERS,
    BACKBONE,
    BEAT_HEAD,
    HEADS,
    adapter_task,
    beat_head_problem,
    parse_sidecar,
    read_backbone_meta,
    read_plan,
)
from ecgmoe_cli.weights_meta import read_json as _read_json

FORMAT_VERSION = 1


def tensors_hash(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over the sorted tensors' names, dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def backbone_tensors(model: EcgMoe) -> dict[str, torch.Tensor]:
    state = model.state_dict()
    return {k: state[k] for k in model.backbone_keys()}


def adapter_tensors(model: EcgMoe, task: str) -> dict[str, torch.Tensor]:
    state = model.state_dict()
    return {k: state[k] for k in model.adapter_keys(task)}


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    _atomic_write(path, lambda p: p.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n"))


def _write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    cpu = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    _atomic_write(path, lambda p: save_file(cpu, str(p), metadata={"format": "pt"}))


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
    _write_tensors(directory / f"{BACKBONE}.safetensors", tensors)
    _write_json(directory / f"{BACKBONE}.json", {
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
    _write_tensors(out, tensors)
    _write_json(out.with_suffix(".json"), {
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


def _bad_file(path: Path, e: Exception) -> EcgMoeError:
    return EcgMoeError(f"not a valid safetensors file ({str(e).splitlines()[0]})", path)


def _header_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from the safetensors header alone: nothing is loaded or allocated."""
    if not path.is_file():
        raise EcgMoeError("file not found", path)
    try:
        with safe_open(str(path), framework="pt") as f:
            names = f.keys()  # a safe_open handle is not iterable
            return {k: tuple(f.get_slice(k).get_shape()) for k in names}
    except Exception as e:  # noqa: BLE001 (safetensors raises several types for a bad header)
        raise _bad_file(path, e) from None


def _read_tensors(path: Path, expected_hash: str) -> dict[str, torch.Tensor]:
    try:
        tensors = load_file(str(path))
    except Exception as e:  # noqa: BLE001 (as above)
        raise _bad_file(path, e) from None
    if tensors_hash(tensors) != expected_hash:
        raise EcgMoeError("tensors do not match the hash in their JSON sidecar (file modified "
                          "or corrupted)", path)
    return tensors


class _AllocationBudget(TorchFunctionMode):
    """Refuses to create tensors past `limit` bytes in all: the model a JSON describes may not
    be much larger than the tensors its file holds (a lying JSON could ask for terabytes).

    Cheaper than building on the meta device, whose first use imports torch._dynamo (seconds).
    """

    _SIZED = frozenset({torch.empty, torch.zeros, torch.ones, torch.randn, torch.rand, torch.full})

    def __init__(self, limit: int, refusal: EcgMoeError) -> None:
        super().__init__()
        self.limit, self.used, self.refusal = limit, 0, refusal

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None
                           ) -> Any:
        kwargs = kwargs or {}
        if func in self._SIZED:
            first_is_size = func is torch.full or (len(args) == 1 and not isinstance(args[0], int))
            size = kwargs.get("size", args[0] if first_is_size and args else args)
            itemsize = (kwargs.get("dtype") or torch.get_default_dtype()).itemsize
            self.used += math.prod(int(n) for n in size) * itemsize
            if self.used > self.limit:
                raise self.refusal
        return func(*args, **kwargs)


def _budget(path: Path, what: str) -> _AllocationBudget:
    """Twice the bytes of the tensor file at `path`, plus slack for buffers and small layers."""
    limit = 2 * path.stat().st_size + (64 << 20)
    return _AllocationBudget(limit, EcgMoeError(
        f"{what} is far larger than the {path.stat().st_size} bytes of tensors in {path.name}",
        path.with_suffix(".json")))


def _check_shapes(model: EcgMoe, found: dict[str, tuple[int, ...]], keys: Sequence[str],
                  path: Path) -> None:
    """`found` (the file's tensor shapes) must be exactly the `keys` of `model`, shape for shape."""
    state = model.state_dict()
    missing, extra = sorted(set(keys) - set(found)), sorted(set(found) - set(keys))
    if missing or extra:
        raise EcgMoeError(f"tensors do not fit the model: missing {missing[:3]}, "
                          f"unexpected {extra[:3]}", path)
    for k in keys:
        if found[k] != tuple(state[k].shape):
            raise EcgMoeError(f"tensor {k} has shape {found[k]}, the model "
                              f"expects {tuple(state[k].shape)}", path)


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
    shapes = _header_shapes(st_path)
    with _budget(st_path, "the model backbone.json describes"):
        model = EcgMoe(config)
    _check_shapes(model, shapes, model.backbone_keys(), st_path)
    model.load_state_dict(_read_tensors(st_path, meta["backbone_hash"]), strict=False)
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
    ameta = _read_json(json_path)
    digest = backbone_hash or tensors_hash(backbone_tensors(model))
    if ameta.get("backbone_hash") != digest:
        raise EcgMoeError(f"adapter was trained on backbone {str(ameta.get('backbone_hash'))[:12]}, "
                          f"not on this one ({digest[:12]})", json_path)
    spec_task = adapter_task(ameta, task, json_path)
    rank, alpha, hashed = parse_sidecar(
        lambda: (int(ameta["rank"]), _alpha(ameta["alpha"]), str(ameta["tensors_hash"])),
        json_path, "adapter")
    st_path = json_path.with_suffix(".safetensors")
    shapes = _header_shapes(st_path)
    try:
        with _budget(st_path, f"the adapter {task}.json describes"):
            model.add_task(spec_task, rank, alpha)
    except EcgMoeError:
        if task not in model.tasks:  # a refusal may stop add_task half-way
            for layer in lora_layers(model.fusion):
                layer.remove_adapter(task)
        raise
    try:
        _check_shapes(model, shapes, model.adapter_keys(task), st_path)
        try:
            # an adapter saved before anchors existed was trained without one
            model.heads[task].set_metadata({"anchor": "", **ameta})  # type: ignore[operator]
        except EcgMoeError as e:
            raise EcgMoeError(str(e), json_path) from None
        tensors = _read_tensors(st_path, hashed)
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
    _write_tensors(out, tensors)
    _write_json(out.with_suffix(".json"), {
        "format": "ecgmoe-beat-head", "version": FORMAT_VERSION, "classes": list(AAMI_CLASSES),
        "config": head.config.to_dict(), "metrics": metrics or {},
        "backbone_hash": backbone_hash, "tensors_hash": tensors_hash(tensors)})
    return out


def load_beat_head(directory: Path, backbone_hash: str, device: str = "cpu"
                   ) -> tuple[BeatHead, dict[str, Any]]:
    """heads/beat_class of `directory`, refused unless trained on `backbone_hash`."""
    problem = beat_head_problem(directory, backbone_hash)
    if problem:
        raise EcgMoeError(problem)
    json_path = Path(directory) / HEADS / f"{BEAT_HEAD}.json"
    meta = _read_json(json_path)
    config, hashed = parse_sidecar(
        lambda: (BeatHeadConfig(**meta["config"]), str(meta["tensors_hash"])), json_path,
        "beat head")
    if list(meta.get("classes", [])) != list(AAMI_CLASSES):
        raise EcgMoeError(f"beat head classes {meta.get('classes')} are not "
                          f"{list(AAMI_CLASSES)}", json_path)
    st_path = json_path.with_suffix(".safetensors")
    shapes = _header_shapes(st_path)
    with _budget(st_path, "the beat head its JSON describes"):
        head = BeatHead(config)
    expected = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    if shapes != expected:
        raise EcgMoeError("beat head tensors do not fit its config", st_path)
    head.load_state_dict(_read_tensors(st_path, hashed))
    return head.to(device).eval(), meta
