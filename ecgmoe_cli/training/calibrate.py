"""Calibration on the validation fold: a temperature (min NLL), the RR evidence of an `afib`
label or class (training/rhythm_evidence.py), then per-label F1 thresholds; for an anchored
regression head the weight of its learned correction (min MAE); `calibrate_heads` fits them on
a model's heads and scores them."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
import torch

from ecgmoe_cli.model.heads import group_log_odds
from ecgmoe_cli.tasks import AF_LABEL
from ecgmoe_cli.training.losses import anchor_values
from ecgmoe_cli.training.metrics import best_f1_threshold
from ecgmoe_cli.training.outputs import decoded_outputs, raw_outputs
from ecgmoe_cli.training.rhythm_evidence import fit_evidence, window_rr_features
from ecgmoe_cli.training.scoring import score_task

# A label with fewer validation positives takes its threshold from the training and validation
# rows together: an F1 optimum over five positives is noise (the rhythm adapter's tachy, AUROC
# 0.986 both times, got 0.18 in one fit and 0.51 in the next; pooled with its 164 training
# positives 0.16). The training rows flatter the head a little; five positives mislead it more.
MIN_THRESHOLD_POSITIVES = 20
RESIDUAL_WEIGHTS = np.linspace(0.0, 1.0, 21)  # the grid an anchored head's weight is chosen on


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def probabilities(kind: str, logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Calibrated probabilities: sigmoid per label (binary/multilabel) or softmax (multiclass)."""
    z = np.asarray(logits, np.float64) / temperature
    return _softmax(z) if kind == "multiclass" else _sigmoid(z)


def nll(kind: str, logits: np.ndarray, y: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood over known targets (NaN = unknown)."""
    p = probabilities(kind, logits, temperature)
    eps = 1e-12
    if kind == "multiclass":
        known = np.isfinite(y) & (y >= 0) & (y < p.shape[1])
        if not known.any():
            return float("nan")
        return float(-np.log(p[known, y[known].astype(int)] + eps).mean())
    known = np.isfinite(y)
    if not known.any():
        return float("nan")
    yk, pk = y[known], p[known]
    return float(-(yk * np.log(pk + eps) + (1 - yk) * np.log(1 - pk + eps)).mean())


def fit_temperature(kind: str, logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature in [0.05, 20] minimising NLL: a log grid, then a golden-section refine."""
    if not np.isfinite(nll(kind, logits, y, 1.0)):
        return 1.0
    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 41))
    losses = [nll(kind, logits, y, t) for t in grid]
    i = int(np.argmin(losses))
    lo, hi = np.log(grid[max(i - 1, 0)]), np.log(grid[min(i + 1, len(grid) - 1)])
    g = (np.sqrt(5) - 1) / 2
    for _ in range(30):
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        if nll(kind, logits, y, np.exp(a)) < nll(kind, logits, y, np.exp(b)):
            hi = b
        else:
            lo = a
    return float(np.exp((lo + hi) / 2))


def fit_thresholds(probs: np.ndarray, y: np.ndarray) -> list[float]:
    """Per label (columns of (B, labels) arrays) the probability cut maximising F1."""
    out = []
    for j in range(probs.shape[1]):
        known = np.isfinite(y[:, j])
        thr, _ = best_f1_threshold(y[known, j], probs[known, j])
        out.append(float(np.clip(thr, 0.0, 1.0)))
    return out


def fit_residual_weight(correction: np.ndarray, anchored: np.ndarray, y: np.ndarray) -> float:
    """The weight in RESIDUAL_WEIGHTS on the correction (in the unit) minimising MAE of
    anchored + weight * correction against y (NaN = unknown); ties keep the larger weight."""
    known = np.isfinite(y) & np.isfinite(correction) & np.isfinite(anchored)
    if not known.any():
        return 1.0
    c, a, t = correction[known], anchored[known], y[known]
    mae = [np.abs(a + w * c - t).mean() for w in RESIDUAL_WEIGHTS]
    return round(float(RESIDUAL_WEIGHTS[len(mae) - 1 - int(np.argmin(mae[::-1]))]), 4)


def _with_fitted_residual_weight(head: Any, ds: Any, rows: np.ndarray, raw: np.ndarray,
                                 target: np.ndarray) -> np.ndarray:
    """Fit an anchored head's residual_weight (raw came with weight 1) and return `rows`' raw
    outputs with it, as `decode` now gives them."""
    value = anchor_values(head.anchor, ds, rows)
    offset = np.nan_to_num((value - head.target_mean) / head.target_scale, nan=0.0)
    correction = raw[:, 0] - offset  # scaled
    weight = fit_residual_weight(correction * head.target_scale,
                                 offset * head.target_scale + head.target_mean, target)
    head.set_metadata({"residual_weight": weight})
    return (offset + weight * correction)[:, None].astype(raw.dtype)


def _in_group(y: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Class indices (NaN or out of range = unknown) -> 1 in `group`, 0 outside, NaN unknown."""
    known = np.isfinite(y) & (y >= 0) & (y < len(group))
    return np.where(known, group[np.where(known, y, 0).astype(int)], np.nan)


def _with_fitted_evidence(head: Any, ds: Any, train_rows: np.ndarray, rows: np.ndarray,
                          raw: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Fit `head`'s RR evidence (none when too few AF windows) and return `rows`' raw outputs
    with it, as `decode` now gives them. A multiclass head's evidence is on the log-odds of
    its AF classes (TaskHead.evidence_group) against the rest."""
    task = head.task
    y_train = ds.targets(train_rows, [task])[task.name]
    if task.kind == "multiclass":
        group = head.evidence_group(AF_LABEL)
        y_train, y_val = (_in_group(y, group.numpy()) for y in (y_train, target))
        logit_val = group_log_odds(torch.from_numpy(raw) / head.temperature, group).numpy()
    else:
        j = task.labels.index(AF_LABEL)
        y_train, y_val, logit_val = y_train[:, j], target[:, j], raw[:, j] / head.temperature
    x_val = window_rr_features(ds, rows)
    head.evidence = fit_evidence(AF_LABEL, window_rr_features(ds, train_rows), y_train,
                                 x_val, logit_val, y_val)
    return head.with_evidence(torch.from_numpy(raw), torch.from_numpy(x_val)).numpy()


def calibrate_heads(model: Any, ds: Any, rows: np.ndarray, tasks: Sequence[Any],
                    batch_size: int, device: str, encoded: Any = None,
                    train_rows: np.ndarray | None = None) -> dict[str, dict[str, Any]]:
    """Fit each head's temperature (min NLL) then thresholds (max F1) on `rows`; score them.

    With `encoded` (cached backbone features of `rows`, and of `train_rows` when given) only
    the adapters and heads run. With `train_rows`, a head with an `afib` label or class also
    gets its RR evidence, fitted on them and fused on `rows`, before its thresholds; and a
    label with fewer than MIN_THRESHOLD_POSITIVES positives in `rows` takes its threshold from
    `train_rows` and `rows` together. An anchored regression head gets the residual_weight
    with the least MAE on `rows`. Any earlier evidence and residual weight are dropped first.
    """
    names = [t.name for t in tasks]
    for n in names:
        model.heads[n].evidence = None
        model.heads[n].residual_weight = 1.0
    outputs = partial(raw_outputs, model, ds) if encoded is None else partial(
        decoded_outputs, model, encoded)
    raw = outputs(rows, names, batch_size, device)
    target = ds.targets(rows, tasks)
    labelled = [t for t in tasks if t.kind in ("binary", "multilabel")] if len(rows) else []
    pooled = train_rows is not None and len(train_rows) > 0
    for t in tasks:
        head = model.heads[t.name]
        if t.kind == "regression" and head.anchor and len(rows):
            raw[t.name] = _with_fitted_residual_weight(head, ds, rows, raw[t.name],
                                                       target[t.name])
        if t.kind != "regression" and len(rows):
            head.set_metadata({"temperature": fit_temperature(t.kind, raw[t.name],
                                                              target[t.name])})
            if pooled and AF_LABEL in t.labels:
                raw[t.name] = _with_fitted_evidence(head, ds, train_rows, rows, raw[t.name],
                                                    target[t.name])
    few: dict[str, list[int]] = {}  # task -> its labels with too few validation positives
    for t in labelled if pooled else []:
        counts = np.nansum(target[t.name], axis=0)
        if (counts < MIN_THRESHOLD_POSITIVES).any():
            few[t.name] = np.flatnonzero(counts < MIN_THRESHOLD_POSITIVES).tolist()
    if few:  # after every head's evidence is set: decode gives the fused outputs there too
        train_raw = outputs(train_rows, list(few), batch_size, device)
        train_target = ds.targets(train_rows, [t for t in labelled if t.name in few])
    for t in labelled:
        head = model.heads[t.name]
        probs = probabilities(t.kind, raw[t.name], head.temperature)
        thresholds = fit_thresholds(probs, target[t.name])
        for j in few.get(t.name, []):
            pooled_p = np.r_[probs[:, j], probabilities(t.kind, train_raw[t.name],
                                                       head.temperature)[:, j]]
            pooled_y = np.r_[target[t.name][:, j], train_target[t.name][:, j]]
            thresholds[j] = fit_thresholds(pooled_p[:, None], pooled_y[:, None])[0]
        head.set_metadata({"thresholds": thresholds})
    scores = {}
    for t in tasks:
        if not len(rows):
            continue
        with torch.no_grad():  # what predict reports, from the same raw outputs
            pred = model.heads[t.name].predict(torch.from_numpy(raw[t.name])).float().numpy()
        scores[t.name] = score_task(t, pred, target[t.name],
                                    thresholds=model.heads[t.name].thresholds, n_boot=0)
    return scores
