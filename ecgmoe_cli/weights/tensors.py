"""Tensor files of the weights: safetensors written whole (via rename) and read back only when
their sha256 matches the sidecar; their shapes read from the header before anything is allocated.

A JSON sidecar describes the model to build; `budget` refuses one that asks for far more memory
than its tensor file holds (a lying JSON could ask for terabytes).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch.overrides import TorchFunctionMode

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.files import atomic_write


def tensors_hash(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over the sorted tensors' names, dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    cpu = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    atomic_write(path, lambda p: save_file(cpu, str(p), metadata={"format": "pt"}))


def _bad_file(path: Path, e: Exception) -> EcgMoeError:
    return EcgMoeError(f"not a valid safetensors file ({str(e).splitlines()[0]})", path)


def header_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from the safetensors header alone: nothing is loaded or allocated."""
    if not path.is_file():
        raise EcgMoeError("file not found", path)
    try:
        with safe_open(str(path), framework="pt") as f:
            names = f.keys()  # a safe_open handle is not iterable
            return {k: tuple(f.get_slice(k).get_shape()) for k in names}
    except Exception as e:  # noqa: BLE001 (safetensors raises several types for a bad header)
        raise _bad_file(path, e) from None


def read_tensors(path: Path, expected_hash: str) -> dict[str, torch.Tensor]:
    try:
        tensors = load_file(str(path))
    except Exception as e:  # noqa: BLE001 (as above)
        raise _bad_file(path, e) from None
    if tensors_hash(tensors) != expected_hash:
        raise EcgMoeError("tensors do not match the hash in their JSON sidecar (file modified "
                          "or corrupted)", path)
    return tensors


class AllocationBudget(TorchFunctionMode):
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


def budget(path: Path, what: str) -> AllocationBudget:
    """Twice the bytes of the tensor file at `path`, plus slack for buffers and small layers."""
    limit = 2 * path.stat().st_size + (64 << 20)
    return AllocationBudget(limit, EcgMoeError(
        f"{what} is far larger than the {path.stat().st_size} bytes of tensors in {path.name}",
        path.with_suffix(".json")))


def check_shapes(model: nn.Module, found: dict[str, tuple[int, ...]], keys: Sequence[str],
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
