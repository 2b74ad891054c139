"""`evaluate`: score weights on one fold of a dataset, per task and by the task's kind."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.dataset import Dataset, open_dataset
from ecgmoe_cli.model.device import resolve_device
from ecgmoe_cli.model.encoders import fold_batchnorm
from ecgmoe_cli.training.folds import TEST_FOLD, check_spec
from ecgmoe_cli.training.outputs import predictions
from ecgmoe_cli.training.scoring import score_task
from ecgmoe_cli.weights.meta import default_weights_dir
from ecgmoe_cli.weights.store import load_model


def evaluate_weights(dataset: Path, weights_dir: Path | None, task_names: Sequence[str] | None,
                     fold: int | None = TEST_FOLD, *, batch_size: int = 64, device: str = "cpu",
                     n_boot: int = 200, seed: int = 0, leads: Sequence[str] | None = None
                     ) -> dict[str, Any]:
    """Score every requested task on one fold (None: every window), by kind.

    `leads` keeps only those leads (lead-robustness checks: the same weights on {I}, {I, II}).
    """
    device = resolve_device(device)
    weights_dir = default_weights_dir() if weights_dir is None else Path(weights_dir)
    model: Any
    model, spec, _ = load_model(weights_dir, device=device)
    ds = open_dataset(dataset)
    check_spec(ds, spec, weights_dir)
    names = _task_names(model, ds, task_names, weights_dir)
    rows = ds.rows(fold=fold)
    if len(rows) == 0:
        raise EcgMoeError(f"no windows in fold {fold}", ds.path)
    fold_batchnorm(model.to(device).eval())  # as predict serves it
    pred = predictions(model, ds, rows, names, batch_size, device, leads)
    tasks = [model.tasks[n] for n in names]
    target = ds.targets(rows, tasks)
    return {"fold": fold, "n_windows": len(rows), "leads": list(leads) if leads else "all",
            "tasks": {t.name: score_task(t, pred[t.name], target[t.name],
                                         thresholds=model.heads[t.name].thresholds,
                                         n_boot=n_boot, seed=seed) for t in tasks}}


def _task_names(model: Any, ds: Dataset, task_names: Sequence[str] | None,
                weights_dir: Path) -> list[str]:
    """The tasks asked for (default: every task of the weights the dataset has targets for),
    each served by the weights and labelled in the dataset."""
    names = list(task_names) if task_names else [n for n, t in model.tasks.items()
                                                  if ds.has_columns(t)]
    if not names:  # an empty table said nothing
        raise EcgMoeError(f"dataset has targets for none of the weights' tasks "
                          f"({', '.join(sorted(model.tasks))}): preprocess records with labels "
                          "(PTB-XL, CinC headers, a labels.csv) to evaluate", ds.path)
    unknown = [n for n in names if n not in model.tasks]
    if unknown:
        raise EcgMoeError(f"weights have no adapter for {unknown}; they have "
                          f"{sorted(model.tasks)}", weights_dir)
    lacking = [n for n in names if not ds.has_columns(model.tasks[n])]
    if lacking:
        raise EcgMoeError(f"dataset has no targets for {lacking}", ds.path)
    return names
