"""Per-epoch checkpoints without pickle: tensors in safetensors, scalars in JSON.

`epoch-NNNN.safetensors` is written first and `epoch-NNNN.json` last (both via rename), so the
JSON is the commit mark: a checkpoint without its JSON is a killed write and is ignored.
`truncate_metrics` drops the metrics.jsonl lines a resume must not repeat.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.files import atomic_write, atomic_write_text

_NAME = re.compile(r"epoch-(\d{4,})\.json$")


def optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors (for safetensors) and JSON-able scalars."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{idx}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                        meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, v in tensors.items():
        if name.startswith("optim."):
            _, idx, k = name.split(".", 2)
            state.setdefault(int(idx), {})[k] = v
    for idx, kv in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(kv)
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()}
              for g in meta["param_groups"]]
    opt.load_state_dict({"state": state, "param_groups": groups})


def save_checkpoint(ckpt_dir: Path, epoch: int, tensors: dict[str, torch.Tensor],
                    opt: torch.optim.Optimizer, state: dict[str, Any]) -> Path:
    """Write checkpoint `epoch` atomically and drop older ones."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    opt_t, opt_meta = optimizer_to_flat(opt)
    all_t = {k: v.detach().cpu().contiguous() for k, v in tensors.items()} | opt_t
    all_t["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        all_t["rng.cuda"] = torch.cuda.get_rng_state()
    st = ckpt_dir / f"epoch-{epoch:04d}.safetensors"
    atomic_write(st, lambda p: save_file(all_t, str(p)))
    meta = {"epoch": epoch, "optimizer": opt_meta, "state": state}
    atomic_write_text(st.with_suffix(".json"), json.dumps(meta))
    for old in ckpt_dir.glob("*epoch-*"):  # with the temporary files of a killed write
        m = re.match(r"\.?epoch-(\d+)\.", old.name)
        if m and int(m.group(1)) < epoch:
            old.unlink(missing_ok=True)
    return st


def latest_checkpoint(ckpt_dir: Path) -> tuple[int, dict[str, torch.Tensor], dict[str, Any]] | None:
    """(epoch, tensors, meta) of the newest committed checkpoint, or None."""
    if not ckpt_dir.is_dir():
        return None
    done = sorted((int(m.group(1)), p) for p in ckpt_dir.iterdir()
                  if (m := _NAME.match(p.name)) and p.with_suffix(".safetensors").is_file())
    if not done:
        return None
    epoch, js = done[-1]
    try:
        meta = json.loads(js.read_text())
        tensors = load_file(str(js.with_suffix(".safetensors")))
    except Exception as e:  # noqa: BLE001 (JSON or safetensors: several error types)
        raise EcgMoeError(f"damaged checkpoint ({e}); delete it to start over", js) from None
    return epoch, tensors, meta


def restore_rng(tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])


def _metrics_epoch(line: str) -> int | None:
    """The epoch of one metrics line, or None for a line that is not a whole JSON record."""
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    epoch = obj.get("epoch", 0) if isinstance(obj, dict) else None
    return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None


def truncate_metrics(path: Path, last_epoch: int) -> None:
    """Drop metrics lines of epochs after the checkpoint (a kill between the two writes) and
    lines cut short (a kill or a full disk in the middle of an append)."""
    if not path.is_file():
        return
    keep = [ln for ln in path.read_text(errors="replace").splitlines()
            if (epoch := _metrics_epoch(ln)) is not None and epoch <= last_epoch]
    atomic_write_text(path, "".join(ln + "\n" for ln in keep))
