"""Score one task's predictions against its targets, by kind (what `evaluate` reports)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ecgmoe_cli.training import metrics as m

SMALL_FOLD = 30  # fewer scored windows than this: every figure gets a warning
FEW_CASES = 5  # fewer positives (or negatives) of a label than this: its AUROC and F1 too


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _warnings(task: str, n: int, labels: dict[str, Any]) -> list[str]:
    """Say when a figure rests on too few windows or cases to mean much (or cannot exist)."""
    out = [f"{task}: only {n} windows scored (< {SMALL_FOLD}): figures are unreliable"
           ] if n < SMALL_FOLD else []
    for name, v in labels.items():
        pos, neg = v["positives"], v["n"] - v["positives"]
        if min(pos, neg) == 0:
            out.append(f"{task}/{name}: {pos} positives, {neg} negatives: AUROC undefined"
                       + ("" if pos else ", F1 undefined") + " (n/a, left out of the means)")
        elif min(pos, neg) < FEW_CASES:
            out.append(f"{task}/{name}: only {pos} positives, {neg} negatives: AUROC and F1 "
                       "are unreliable")
    return out


def score_task(task: Any, pred: np.ndarray, target: np.ndarray,
               thresholds: list[float] | None = None, n_boot: int = 200, seed: int = 0
               ) -> dict[str, Any]:
    """Metrics of one task; `pred` is probabilities (B, n) or values (B,) in the task's unit.

    Unknown targets (NaN) are left out per label. Values that cannot be computed (one class
    only, no labelled sample; F1 without a positive) are None, so JSON stays valid, and are
    left out of the macro means. `warnings` says which figures rest on too few windows.
    """
    kind = task.kind
    if kind in ("binary", "multilabel"):
        pred = pred.reshape(len(pred), -1)
        target = target.reshape(len(target), -1)
        thresholds = thresholds or [0.5] * pred.shape[1]
        labels: dict[str, Any] = {}
        for j, name in enumerate(task.labels):
            known = np.isfinite(target[:, j])
            y, p = target[known, j], pred[known, j]
            auc = m.auroc(y, p)
            lo, hi = m.bootstrap_ci(m.auroc, y, p, n_boot=n_boot, seed=seed) if np.isfinite(auc) \
                else (np.nan, np.nan)
            labels[name] = {
                "n": int(known.sum()), "positives": int(y.sum()), "auroc": _finite(auc),
                "auroc_ci": [_finite(lo), _finite(hi)],
                "f1": _finite(m.f1_score(y, p >= thresholds[j])) if y.any() else None,
                "threshold": float(thresholds[j]),
                "ece": _finite(m.expected_calibration_error(y, p)),
            }
        aucs = [v["auroc"] for v in labels.values() if v["auroc"] is not None]
        f1s = [v["f1"] for v in labels.values() if v["f1"] is not None]
        eces = [v["ece"] for v in labels.values() if v["ece"] is not None]
        n = int(np.isfinite(target).any(1).sum())
        return {"kind": kind, "n": n,
                "macro_auroc": float(np.mean(aucs)) if aucs else None,
                "f1": float(np.mean(f1s)) if f1s else None,
                "ece": float(np.mean(eces)) if eces else None, "labels": labels,
                "warnings": _warnings(task.name, n, labels)}
    known = np.isfinite(target)
    if kind == "multiclass":
        known &= (target >= 0) & (target < pred.shape[1])
        y, cls = target[known].astype(int), pred[known].argmax(1)
        return {"kind": kind, "n": int(known.sum()),
                "accuracy": _finite(m.accuracy(y, cls)),
                "macro_f1": _finite(m.macro_f1(y, cls, pred.shape[1])) if len(y) else None,
                "warnings": _warnings(task.name, int(known.sum()), {})}
    y, v = target[known], pred.reshape(-1)[known]
    err = m.mae(y, v)
    lo, hi = m.bootstrap_ci(m.mae, y, v, n_boot=n_boot, seed=seed)
    return {"kind": kind, "n": int(known.sum()), "mae": _finite(err),
            "mae_ci": [_finite(lo), _finite(hi)], "unit": getattr(task, "unit", None),
            "warnings": _warnings(task.name, int(known.sum()), {})}
