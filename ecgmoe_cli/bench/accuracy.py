"""Accuracy beside the timings: each trained contender's headline metric on the test fold, and
ecgmoe's advantage over it with a paired bootstrap CI."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ecgmoe_cli.bench.contenders import Contender
from ecgmoe_cli.bench.timing import autocast
from ecgmoe_cli.training.folds import TEST_FOLD
from ecgmoe_cli.training.metrics import bootstrap_ci
from ecgmoe_cli.training.outputs import model_outputs
from ecgmoe_cli.training.scoring import score_task

HEADLINE = {"binary": "macro_auroc", "multilabel": "macro_auroc", "multiclass": "accuracy",
            "regression": "mae"}


def predictions(c: Contender, ds: Any, rows: np.ndarray, device: torch.device,
                dtype: torch.dtype, batch_size: int = 64) -> dict[str, np.ndarray]:
    """What predict reports per task (probabilities, class probabilities, values), row order."""
    with autocast(device, dtype):
        return model_outputs(c.module, ds, rows, c.tasks, batch_size, str(device),
                             lambda batch, _names: c.predict(batch))


def _headline(task: Any, pred: np.ndarray, target: np.ndarray) -> float:
    value = score_task(task, pred, target, n_boot=0)[HEADLINE[task.kind]]
    return float("nan") if value is None else value


def advantage(task: Any, ours: np.ndarray, theirs: np.ndarray, target: np.ndarray,
              n_boot: int = 200, seed: int = 0) -> dict[str, Any]:
    """How much better `ours` scores than `theirs` on the same windows (positive: ours better;
    for MAE, theirs minus ours), with a paired bootstrap 95 % CI: both resampled on the same
    windows, so a gap within the test fold's noise shows as an interval across 0."""
    sign = -1.0 if task.kind == "regression" else 1.0

    def gap(a: np.ndarray, b: np.ndarray, y: np.ndarray) -> float:
        return sign * (_headline(task, a, y) - _headline(task, b, y))

    value = gap(ours, theirs, target)
    lo, hi = bootstrap_ci(gap, ours, theirs, target, n_boot=n_boot, seed=seed)
    return {"value": value if np.isfinite(value) else None,
            "ci95": [v if np.isfinite(v) else None for v in (lo, hi)]}


def score_contender(c: Contender, ds: Any, rows: np.ndarray, pred: dict[str, np.ndarray] | None,
                    reference: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Each task's headline metric on the test fold from `pred` (None: a model without weights,
    no figure); beside it ecgmoe's advantage when `reference` holds ecgmoe's predictions."""
    entry: dict[str, Any] = {"model": c.name, "trained": c.trained, "fold": TEST_FOLD,
                             "n_windows": len(rows), "tasks": None}
    if pred is None:
        return entry
    module: Any = c.module
    entry["tasks"] = {}
    for name in c.tasks:
        task = module.tasks[name]
        if not ds.has_columns(task):
            entry["tasks"][name] = {"metric": HEADLINE[task.kind], "value": None, "n": 0}
            continue
        target = ds.targets(rows, [task])[name]
        s = score_task(task, pred[name], target, thresholds=module.heads[name].thresholds,
                       n_boot=0)
        entry["tasks"][name] = {"metric": HEADLINE[task.kind], "value": s[HEADLINE[task.kind]],
                                "n": s["n"]}
        if reference is not None and c.name != "ecgmoe" and name in reference:
            entry["tasks"][name]["ecgmoe_advantage"] = advantage(task, reference[name],
                                                                 pred[name], target)
    return entry
