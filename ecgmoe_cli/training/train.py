"""`train`: the whole model, multi-task, on one or several datasets of one spec.

Rank 0 of a DDP run writes RUN_DIR/weights; every rank trains.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.dataset import Dataset, open_datasets
from ecgmoe_cli.model.baselines import dense_multitask
from ecgmoe_cli.model.config import EcgMoeConfig
from ecgmoe_cli.model.ecgmoe import EcgMoe
from ecgmoe_cli.training.calibrate import calibrate_heads
from ecgmoe_cli.training.ddp import DistInfo, barrier, init_distributed, shutdown
from ecgmoe_cli.training.folds import check_spec, train_val_rows
from ecgmoe_cli.training.loop import FitConfig, FitResult, fit
from ecgmoe_cli.training.losses import Objective, set_regression_scaling
from ecgmoe_cli.weights.store import backbone_tensors, load_model, save_model


def parse_task_weights(items: Sequence[str] | None) -> dict[str, float]:
    """`["potassium=3", ...]` (the CLI's TASK=W) -> {task: weight}; weights finite and > 0."""
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = math.nan
        if not (sep and name.strip() and math.isfinite(weight) and weight > 0):
            raise EcgMoeError(f"task weight {item!r} is not TASK=W with W a number > 0")
        out[name.strip()] = weight
    return out


def train_backbone(dataset: Path | Sequence[Path], run_dir: Path, config_name: str,
                   cfg: FitConfig, *, device: str = "cpu", resume: bool = False,
                   ssl_weight: float = 0.5, task_weights: dict[str, float] | None = None,
                   progress: bool = True, dense: bool = False, init: Path | None = None
                   ) -> dict[str, Any] | None:
    """Multi-task training of the whole model; rank 0 writes RUN_DIR/weights and metrics.

    Several datasets (one spec) train as one: real corpora beside the synthetic one, each
    window's unknown targets left out of the loss. `init` starts from a saved backbone (the
    heads start fresh), e.g. the synthetic pre-training stage. `dense` trains bench's
    dense_multitask baseline instead, by this same recipe (masked-beat loss, lead dropout,
    best epoch by validation loss, calibrated heads): a like-for-like rival.
    """
    info = init_distributed(device)
    try:
        ds = open_datasets([dataset] if isinstance(dataset, (str, Path)) else dataset)
        tasks = _dataset_tasks(ds)
        task_weights = dict(task_weights or {})
        _check_task_weights(task_weights, tasks, dataset)
        train_rows, val_rows = train_val_rows(ds)
        torch.manual_seed(cfg.seed)
        config = EcgMoeConfig.from_spec(config_name, ds.spec)
        model = (dense_multitask(config, tasks) if dense else EcgMoe(config, tasks)).to(info.device)
        if init is not None and not resume:
            _load_backbone_into(model, Path(init), ds)
        model.mark_trainable(None)
        set_regression_scaling(model, ds, train_rows, tasks)
        objective = Objective(model, [t.name for t in tasks], ssl_weight,
                              task_weights=task_weights)
        params = [p for p in model.parameters() if p.requires_grad]
        result = fit(model, objective, params, ds, train_rows, val_rows, tasks, cfg, run_dir,
                     info, resume=resume, show_progress=progress,
                     step_module=_step_module(objective, info))
        summary = None
        if info.is_main:
            summary = _save_run(model, ds, (train_rows, val_rows), tasks, cfg, info.device,
                                run_dir, result, task_weights)
            summary["world_size"] = info.world
        barrier(info)
        return summary
    finally:
        shutdown(info)


def _dataset_tasks(ds: Dataset) -> list[Any]:
    """The tasks a dataset has target columns for (at least one, or there is nothing to learn)."""
    tasks = [t for t in ds.tasks if ds.has_columns(t)]
    if not tasks:
        raise EcgMoeError("dataset has no target columns to train on", ds.path)
    return tasks


def _check_task_weights(task_weights: dict[str, float], tasks: Sequence[Any],
                        dataset: Any) -> None:
    unknown = sorted(set(task_weights) - {t.name for t in tasks})
    if unknown:
        raise EcgMoeError(f"task weight for {', '.join(unknown)}: the dataset has no "
                          f"targets for it; it has {', '.join(t.name for t in tasks)}",
                          dataset)


def _step_module(objective: Objective, info: DistInfo) -> torch.nn.Module:
    """The module a training step calls: `objective`, or its DDP wrapper when distributed."""
    if not info.distributed:
        return objective
    import warnings

    from torch.nn.parallel import DistributedDataParallel

    # the stacked task heads' grads are transposed views: harmless, but DDP warns
    warnings.filterwarnings("ignore", message="Grad strides do not match")

    objective.touch_all = True  # every parameter in every graph: no unused-param scan
    return DistributedDataParallel(
        objective, device_ids=[info.device] if info.device.startswith("cuda") else None)


def _save_run(model: EcgMoe, ds: Dataset, rows: tuple[Any, Any], tasks: Sequence[Any],
              cfg: FitConfig, device: str, run_dir: Path, result: FitResult,
              task_weights: dict[str, float]) -> dict[str, Any]:
    """Calibrate the heads on fold 9 (rows: training, validation), write RUN_DIR/weights with
    the metrics; the summary."""
    train_rows, val_rows = rows
    scores = calibrate_heads(model, ds, val_rows, tasks, cfg.batch_size, device,
                             train_rows=train_rows)
    metrics = {"best_epoch": result.best_epoch, "val_loss": result.best_val_loss,
               "task_weights": task_weights, "validation": scores}
    metrics |= {t.name: {"validation": scores[t.name]} for t in tasks}
    out = run_dir / "weights"
    save_model(model, ds.spec, out, metrics=metrics)
    return {"weights": str(out), "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch, "best_val_loss": result.best_val_loss,
            "tasks": [t.name for t in tasks], "task_weights": task_weights}


def _load_backbone_into(model: Any, init: Path, ds: Dataset) -> None:
    """Copy a saved backbone's tensors into `model` (same config and spec, fresh heads)."""
    start, spec, _ = load_model(init, tasks=[])
    check_spec(ds, spec, init)
    if start.config != model.config:
        raise EcgMoeError(f"backbone config differs from the run's ({model.config.name} "
                          "preset with this dataset's spec)", init)
    model.load_state_dict(backbone_tensors(start), strict=False)
