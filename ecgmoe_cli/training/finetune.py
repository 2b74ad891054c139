"""`finetune`: one task's LoRA adapter and head on the frozen backbone, calibrated on fold 9.

The backbone is frozen, so its features of every window are computed once (`FeatureCache`)
and each epoch trains only the adapter and head on them; one cache serves every task of a run.
"""

from __future__ import annotations

import difflib
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.dataset import Dataset, open_datasets
from ecgmoe_cli.io.outputs import new_run_dir
from ecgmoe_cli.model.device import resolve_device
from ecgmoe_cli.tasks import TASKS, user_task
from ecgmoe_cli.training.calibrate import calibrate_heads
from ecgmoe_cli.training.ddp import DistInfo
from ecgmoe_cli.training.encoded import DecodeObjective, EncodedDataset, features_to_torch
from ecgmoe_cli.training.folds import check_spec, train_val_rows
from ecgmoe_cli.training.loop import FitConfig, fit, progress_bar
from ecgmoe_cli.training.losses import set_regression_scaling
from ecgmoe_cli.weights.meta import default_weights_dir, refuse_shipped_weights
from ecgmoe_cli.weights.store import load_model, save_adapter, save_backbone


@dataclass
class FeatureCache:
    """The frozen backbone's features of the last (backbone, dataset, device) encoded: a run
    that fine-tunes several tasks encodes the windows once. Lives as long as that run."""

    key: tuple[Any, ...] | None = None
    encoded: EncodedDataset | None = field(default=None, repr=False)

    def get(self, key: tuple[Any, ...], encode: Any) -> EncodedDataset:
        """The cached features under `key`, else `encode()` (which then replaces them)."""
        if self.encoded is None or key != self.key:
            self.key, self.encoded = key, None  # free the old features before encoding anew
            self.encoded = encode()
        return self.encoded


def finetune_adapter(task_name: str, dataset: Path | Sequence[Path], backbone: Path | None,
                     output: Path | None, cfg: FitConfig, *, kind: str | None = None,
                     rank: int | None = None, alpha: float | None = None, device: str = "cpu",
                     resume: bool = False, progress: bool = True,
                     cache: FeatureCache | None = None) -> dict[str, Any]:
    """Train one task's adapter + head on the frozen backbone, calibrate on fold 9, save.

    `cache`: the backbone features of an earlier task of the same run (filled when empty).
    """
    device = resolve_device(device)
    backbone = default_weights_dir() if backbone is None else Path(backbone)
    output = new_run_dir("finetune", [task_name]) if output is None else Path(output)
    refuse_shipped_weights(output)
    ds = open_datasets([dataset] if isinstance(dataset, (str, Path)) else dataset)
    task = resolve_task(task_name, kind, ds)
    model: Any  # EcgMoe; Any because heads are reached by task name
    model, spec, meta = load_model(backbone, tasks=[], device=device)
    check_spec(ds, spec, backbone)
    train_rows, val_rows = train_val_rows(ds)
    torch.manual_seed(cfg.seed)
    model.add_task(task, rank=rank, alpha=alpha)
    model.to(device)
    model.mark_trainable(task.name)
    set_regression_scaling(model, ds, train_rows, [task])
    both = np.concatenate([train_rows, val_rows])
    key = (meta["backbone_hash"], str(dataset), len(ds), device)
    encoded = (cache or FeatureCache()).get(
        key, lambda: encode_rows(model, ds, both, cfg.batch_size, device, progress))
    known = _rows_with_targets(ds, both, task)
    train_rows, val_rows = np.intersect1d(train_rows, known), np.intersect1d(val_rows, known)
    if len(train_rows) == 0:
        raise EcgMoeError(f"no training window has a {task.name!r} target", ds.path)
    run_dir = output / "runs" / task.name  # metrics.jsonl stays; checkpoints go when done
    result = fit(model, DecodeObjective(model, [task.name]), model.trainable_parameters(task.name),
                 encoded, train_rows, val_rows, [task], replace(cfg, lead_dropout=0.0), run_dir,
                 DistInfo(0, 1, device), resume=resume, show_progress=progress,
                 to_batch=features_to_torch)
    scores = calibrate_heads(model, ds, val_rows, [task], cfg.batch_size, device, encoded,
                             train_rows=train_rows)
    metrics = {"best_epoch": result.best_epoch, "val_loss": result.best_val_loss,
               "validation": scores[task.name]}
    if output.resolve() != backbone.resolve():  # the adapter needs its backbone beside it
        save_backbone(model, spec, output, metrics=meta.get("metrics"))
    path = save_adapter(model, task.name, output, meta["backbone_hash"], metrics=metrics)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    head = model.heads[task.name]
    return {"task": task.name, "adapter": str(path), "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch, "best_val_loss": result.best_val_loss,
            "temperature": head.temperature, "thresholds": list(head.thresholds),
            "validation": scores[task.name]}


def resolve_task(name: str, kind: str | None, ds: Dataset) -> Any:
    """A built-in task, a user task saved in the dataset, or one built from --kind + columns."""
    known = {t.name: t for t in ds.tasks} | {n: t for n, t in TASKS.items() if n not in
                                            {t.name for t in ds.tasks}}
    if name in known:
        task = known[name]
        if kind is not None and kind != task.kind:
            raise EcgMoeError(f"task {name!r} is {task.kind}, not {kind}")
    else:
        if kind is None:
            close = difflib.get_close_matches(name, known, n=1)
            raise EcgMoeError(f"unknown task {name!r}" + (f" (did you mean {close[0]!r}?)"
                                                          if close else "")
                              + f"; known tasks: {', '.join(known)}; or pass --kind for a "
                              "labels.csv column")
        task = user_task(name, kind, labels=_user_labels(name, kind, ds))
    if not ds.has_columns(task):
        raise EcgMoeError(f"dataset has no target columns {task.columns()} for task {name!r}",
                          ds.path)
    return task


def _user_labels(name: str, kind: str, ds: Dataset) -> list[str]:
    """A labels.csv task's labels: its y_<name>__<label> columns, or class_i for multiclass."""
    if kind == "multiclass":
        y = ds.index.get(f"y_{name}")
        n = int(np.nanmax(y) + 1) if y is not None and y.notna().any() else 0
        return [f"class_{i}" for i in range(max(n, 2))]
    cols = [c for c in ds.index.columns if c.startswith(f"y_{name}__")]
    return [c.split("__", 1)[1] for c in cols] if kind in ("binary", "multilabel") else []


def _rows_with_targets(ds: Dataset, rows: np.ndarray, task: Any) -> np.ndarray:
    """The rows where at least one of the task's targets is known (the rest teach nothing)."""
    y = ds.targets(rows, [task])[task.name].reshape(len(rows), -1)
    return rows[np.isfinite(y).any(axis=1)]


def encode_rows(model: Any, ds: Dataset, rows: np.ndarray, batch_size: int, device: str,
                progress: bool) -> EncodedDataset:
    """The frozen backbone's features of `rows`, once, behind a rich progress bar."""
    with progress_bar(progress, "encoding", -(-len(rows) // batch_size)) as advance:
        return EncodedDataset(model, ds, rows, batch_size, device, advance)
