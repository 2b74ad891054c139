"""The three jobs behind `train`, `finetune` and `evaluate`, as plain functions.

Folds: 1-8 train, 9 validation (early stopping, calibration), 10 test.
"""

from __future__ import annotations

import difflib
import math
import shutil
from dataclasses import replace
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.dataset import Dataset, open_dataset, open_datasets
from ecgmoe_cli.io.outputs import new_run_dir
from ecgmoe_cli.model.encoders import fold_batchnorm
from ecgmoe_cli.training.calibrate import fit_temperature, fit_thresholds, probabilities
from ecgmoe_cli.training.ddp import barrier, init_distributed, resolve_device, shutdown
from ecgmoe_cli.training.loop import FitConfig, iterate_batches
from ecgmoe_cli.training.scoring import score_task
from ecgmoe_cli.weights_meta import default_weights_dir, refuse_shipped_weights

TRAIN_FOLDS, VAL_FOLD, TEST_FOLD = tuple(range(1, 9)), 9, 10
_ENCODED: dict[tuple[Any, ...], Any] = {}  # the last backbone features finetune computed


def _check_spec(ds: Dataset, spec: Any, weights_dir: Path) -> None:
    if spec != ds.spec:
        raise EcgMoeError(f"dataset {ds.path} was preprocessed with spec {ds.spec.hash()} but the "
                          f"weights expect {spec.hash()}; re-run preprocess with the weights' "
                          "spec", weights_dir)


def _train_rows(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    train, val = ds.rows(fold=TRAIN_FOLDS), ds.rows(fold=VAL_FOLD)
    if len(train) == 0:
        raise EcgMoeError("no windows in training folds 1-8", ds.path)
    return train, val


def raw_outputs(model: Any, ds: Dataset, rows: np.ndarray, tasks: Sequence[str],
                batch_size: int, device: str) -> dict[str, np.ndarray]:
    """Raw head outputs (logits / scaled values) of `tasks` over `rows`, in row order."""
    model.eval()
    chunks: dict[str, list[np.ndarray]] = {t: [] for t in tasks}
    with torch.no_grad():
        for batch, _ in iterate_batches(ds, rows, [], batch_size, device):
            out, _ = model(batch, tasks=list(tasks))
            for t in tasks:
                chunks[t].append(out[t].float().cpu().numpy())
    return {t: np.concatenate(v) if v else np.zeros((0, model.tasks[t].n_outputs))
            for t, v in chunks.items()}


def keep_leads(leads: Sequence[str] | None) -> Any:
    """A batch converter that keeps only `leads` (the rest masked, as if never recorded)."""
    from ecgmoe_cli.model.batch import to_torch
    from ecgmoe_cli.signal.leads import CANONICAL_LEADS

    if not leads:
        return to_torch
    lower = {n.lower(): i for i, n in enumerate(CANONICAL_LEADS)}
    unknown = [n for n in leads if n.lower() not in lower]
    if unknown:
        raise EcgMoeError(f"unknown leads {unknown}; use names of {', '.join(CANONICAL_LEADS)}")
    keep = np.zeros(len(CANONICAL_LEADS), bool)
    keep[[lower[n.lower()] for n in leads]] = True

    def convert(arrays: dict[str, np.ndarray], device: str) -> dict[str, torch.Tensor]:
        arrays = dict(arrays)
        arrays["lead_mask"] = arrays["lead_mask"] & keep
        arrays["signal"] = arrays["signal"] * keep[:, None]
        return to_torch(arrays, device)

    return convert


def predictions(model: Any, ds: Dataset, rows: np.ndarray, tasks: Sequence[str],
                batch_size: int, device: str, leads: Sequence[str] | None = None
                ) -> dict[str, np.ndarray]:
    """What predict reports: calibrated probabilities, class probabilities or unit values."""
    model.eval()
    chunks: dict[str, list[np.ndarray]] = {t: [] for t in tasks}
    for batch, _ in iterate_batches(ds, rows, [], batch_size, device, keep_leads(leads)):
        for t, v in model.predict(batch, list(tasks)).items():
            chunks[t].append(v.float().cpu().numpy())
    return {t: np.concatenate(v) for t, v in chunks.items()}


def decoded_outputs(model: Any, encoded: Any, rows: np.ndarray, tasks: Sequence[str],
                    batch_size: int, device: str) -> dict[str, np.ndarray]:
    """`raw_outputs` from cached backbone features (finetune: the backbone is frozen)."""
    from ecgmoe_cli.training.encoded import cached_features, features_to_torch

    model.eval()
    chunks: dict[str, list[np.ndarray]] = {t: [] for t in tasks}
    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            f = features_to_torch(encoded.batch(rows[i:i + batch_size]), device)
            for t, v in model.decode(cached_features(f), list(tasks)).items():
                chunks[t].append(v.float().cpu().numpy())
    return {t: np.concatenate(v) if v else np.zeros((0, model.tasks[t].n_outputs))
            for t, v in chunks.items()}


def calibrate_heads(model: Any, ds: Dataset, rows: np.ndarray, tasks: Sequence[Any],
                    batch_size: int, device: str, encoded: Any = None
                    ) -> dict[str, dict[str, Any]]:
    """Fit each head's temperature (min NLL) then thresholds (max F1) on `rows`; score them.

    With `encoded` (cached backbone features of `rows`) only the adapters and heads run.
    """
    names = [t.name for t in tasks]
    raw = (raw_outputs(model, ds, rows, names, batch_size, device) if encoded is None else
           decoded_outputs(model, encoded, rows, names, batch_size, device))
    target = ds.targets(rows, tasks)
    scores = {}
    for t in tasks:
        head = model.heads[t.name]
        if t.kind != "regression" and len(rows):
            temp = fit_temperature(t.kind, raw[t.name], target[t.name])
            meta: dict[str, Any] = {"temperature": temp}
            if t.kind in ("binary", "multilabel"):
                meta["thresholds"] = fit_thresholds(probabilities(t.kind, raw[t.name], temp),
                                                    target[t.name])
            head.set_metadata(meta)
    for t in tasks:
        if not len(rows):
            continue
        with torch.no_grad():  # what predict reports, from the same raw outputs
            pred = model.heads[t.name].predict(torch.from_numpy(raw[t.name])).float().numpy()
        scores[t.name] = score_task(t, pred, target[t.name],
                                    thresholds=model.heads[t.name].thresholds, n_boot=0)
    return scores


def _dataset_tasks(ds: Dataset) -> list[Any]:
    tasks = [t for t in ds.tasks if ds.has_columns(t)]
    if not tasks:
        raise EcgMoeError("dataset has no target columns to train on", ds.path)
    return tasks


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
    from ecgmoe_cli import weights
    from ecgmoe_cli.model.baselines import dense_multitask
    from ecgmoe_cli.model.config import EcgMoeConfig
    from ecgmoe_cli.model.ecgmoe import EcgMoe
    from ecgmoe_cli.training.loop import fit
    from ecgmoe_cli.training.losses import Objective, set_regression_scaling

    info = init_distributed(device)
    try:
        ds = open_datasets([dataset] if isinstance(dataset, (str, Path)) else dataset)
        tasks = _dataset_tasks(ds)
        task_weights = dict(task_weights or {})
        unknown = sorted(set(task_weights) - {t.name for t in tasks})
        if unknown:
            raise EcgMoeError(f"task weight for {', '.join(unknown)}: the dataset has no "
                              f"targets for it; it has {', '.join(t.name for t in tasks)}",
                              dataset)
        train_rows, val_rows = _train_rows(ds)
        torch.manual_seed(cfg.seed)
        config = EcgMoeConfig.from_spec(config_name, ds.spec)
        model = (dense_multitask(config, tasks) if dense else EcgMoe(config, tasks)).to(info.device)
        if init is not None and not resume:
            _load_backbone_into(model, Path(init), ds)
        model.mark_trainable(None)
        set_regression_scaling(model, ds, train_rows, tasks)
        objective = Objective(model, [t.name for t in tasks], ssl_weight,
                              task_weights=task_weights)
        step_module: torch.nn.Module = objective
        if info.distributed:
            import warnings

            from torch.nn.parallel import DistributedDataParallel

            # the stacked task heads' grads are transposed views: harmless, but DDP warns
            warnings.filterwarnings("ignore", message="Grad strides do not match")

            objective.touch_all = True  # every parameter in every graph: no unused-param scan
            step_module = DistributedDataParallel(
                objective, device_ids=[info.device] if info.device.startswith("cuda") else None)
        params = [p for p in model.parameters() if p.requires_grad]
        result = fit(model, objective, params, ds, train_rows, val_rows, tasks, cfg, run_dir,
                     info, resume=resume, show_progress=progress, step_module=step_module)
        summary = None
        if info.is_main:
            scores = calibrate_heads(model, ds, val_rows, tasks, cfg.batch_size, info.device)
            metrics = {"best_epoch": result.best_epoch, "val_loss": result.best_val_loss,
                       "task_weights": task_weights, "validation": scores}
            metrics |= {t.name: {"validation": scores[t.name]} for t in tasks}
            out = run_dir / "weights"
            weights.save_model(model, ds.spec, out, metrics=metrics)
            summary = {"weights": str(out), "epochs_run": result.epochs_run,
                       "best_epoch": result.best_epoch, "best_val_loss": result.best_val_loss,
                       "tasks": [t.name for t in tasks], "task_weights": task_weights,
                       "world_size": info.world}
        barrier(info)
        return summary
    finally:
        shutdown(info)


def _load_backbone_into(model: Any, init: Path, ds: Dataset) -> None:
    """Copy a saved backbone's tensors into `model` (same config and spec, fresh heads)."""
    from ecgmoe_cli import weights

    start, spec, _ = weights.load_model(init, tasks=[])
    _check_spec(ds, spec, init)
    if start.config != model.config:
        raise EcgMoeError(f"backbone config differs from the run's ({model.config.name} "
                          "preset with this dataset's spec)", init)
    model.load_state_dict(weights.backbone_tensors(start), strict=False)


def resolve_task(name: str, kind: str | None, ds: Dataset) -> Any:
    """A built-in task, a user task saved in the dataset, or one built from --kind + columns."""
    from ecgmoe_cli.tasks import TASKS, user_task

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
        cols = [c for c in ds.index.columns if c.startswith(f"y_{name}__")]
        labels = [c.split("__", 1)[1] for c in cols] if kind in ("binary", "multilabel") else []
        if kind == "multiclass":
            y = ds.index.get(f"y_{name}")
            n = int(np.nanmax(y) + 1) if y is not None and y.notna().any() else 0
            labels = [f"class_{i}" for i in range(max(n, 2))]
        task = user_task(name, kind, labels=labels)
    if not ds.has_columns(task):
        raise EcgMoeError(f"dataset has no target columns {task.columns()} for task {name!r}",
                          ds.path)
    return task


def finetune_adapter(task_name: str, dataset: Path | Sequence[Path], backbone: Path | None, output: Path | None,
                     cfg: FitConfig, *, kind: str | None = None, rank: int | None = None,
                     alpha: float | None = None, device: str = "cpu", resume: bool = False,
                     progress: bool = True) -> dict[str, Any]:
    """Train one task's adapter + head on the frozen backbone, calibrate on fold 9, save."""
    from ecgmoe_cli import weights
    from ecgmoe_cli.training.ddp import DistInfo
    from ecgmoe_cli.training.loop import fit
    from ecgmoe_cli.training.encoded import DecodeObjective, features_to_torch
    from ecgmoe_cli.training.losses import set_regression_scaling

    device = resolve_device(device)
    backbone = default_weights_dir() if backbone is None else Path(backbone)
    output = new_run_dir("finetune", [task_name]) if output is None else Path(output)
    refuse_shipped_weights(output)
    ds = open_datasets([dataset] if isinstance(dataset, (str, Path)) else dataset)
    task = resolve_task(task_name, kind, ds)
    model: Any  # EcgMoe; Any because heads are reached by task name
    model, spec, meta = weights.load_model(backbone, tasks=[], device=device)
    _check_spec(ds, spec, backbone)
    train_rows, val_rows = _train_rows(ds)
    torch.manual_seed(cfg.seed)
    model.add_task(task, rank=rank, alpha=alpha)
    model.to(device)
    model.mark_trainable(task.name)
    set_regression_scaling(model, ds, train_rows, [task])
    key = (meta["backbone_hash"], str(dataset), len(ds), device)
    if key not in _ENCODED:  # one finetune run serving several tasks encodes once
        _ENCODED.clear()
        _ENCODED[key] = encode_rows(model, ds, np.concatenate([train_rows, val_rows]),
                                    cfg.batch_size, device, progress)
    encoded = _ENCODED[key]
    known = _rows_with_targets(ds, np.concatenate([train_rows, val_rows]), task)
    train_rows, val_rows = np.intersect1d(train_rows, known), np.intersect1d(val_rows, known)
    if len(train_rows) == 0:
        raise EcgMoeError(f"no training window has a {task.name!r} target", ds.path)
    objective = DecodeObjective(model, [task.name])
    run_dir = output / "runs" / task.name  # metrics.jsonl stays; checkpoints go when done
    result = fit(model, objective, model.trainable_parameters(task.name), encoded, train_rows,
                 val_rows, [task], replace(cfg, lead_dropout=0.0), run_dir,
                 DistInfo(0, 1, device), resume=resume, show_progress=progress,
                 to_batch=features_to_torch)
    scores = calibrate_heads(model, ds, val_rows, [task], cfg.batch_size, device, encoded)
    metrics = {"best_epoch": result.best_epoch, "val_loss": result.best_val_loss,
               "validation": scores[task.name]}
    if output.resolve() != backbone.resolve():  # the adapter needs its backbone beside it
        weights.save_backbone(model, spec, output, metrics=meta.get("metrics"))
    path = weights.save_adapter(model, task.name, output, meta["backbone_hash"], metrics=metrics)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    head = model.heads[task.name]
    return {"task": task.name, "adapter": str(path), "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch, "best_val_loss": result.best_val_loss,
            "temperature": head.temperature, "thresholds": list(head.thresholds),
            "validation": scores[task.name]}


def _rows_with_targets(ds: Dataset, rows: np.ndarray, task: Any) -> np.ndarray:
    """The rows where at least one of the task's targets is known (the rest teach nothing)."""
    y = ds.targets(rows, [task])[task.name].reshape(len(rows), -1)
    return rows[np.isfinite(y).any(axis=1)]


def encode_rows(model: Any, ds: Dataset, rows: np.ndarray, batch_size: int, device: str,
                progress: bool) -> Any:
    """The frozen backbone's features of `rows`, once, behind a rich progress bar."""
    from ecgmoe_cli.training.encoded import EncodedDataset
    from ecgmoe_cli.training.loop import progress_bar

    with progress_bar(progress, "encoding", -(-len(rows) // batch_size)) as advance:
        return EncodedDataset(model, ds, rows, batch_size, device, advance)


def evaluate_weights(dataset: Path, weights_dir: Path | None, task_names: Sequence[str] | None,
                     fold: int | None = TEST_FOLD, *, batch_size: int = 64, device: str = "cpu",
                     n_boot: int = 200, seed: int = 0, leads: Sequence[str] | None = None
                     ) -> dict[str, Any]:
    """Score every requested task on one fold (None: every window), by kind.

    `leads` keeps only those leads (lead-robustness checks: the same weights on {I}, {I, II}).
    """
    from ecgmoe_cli import weights

    device = resolve_device(device)
    weights_dir = default_weights_dir() if weights_dir is None else Path(weights_dir)
    model: Any
    model, spec, _ = weights.load_model(weights_dir, device=device)
    ds = open_dataset(dataset)
    _check_spec(ds, spec, weights_dir)
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
