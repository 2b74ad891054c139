"""Fitting a head's RR evidence (model/rhythm_evidence.py) during calibration.

Two logistic regressions, so that neither learns from outputs it was trained on:
- the RR statistics alone -> AF, on the training rows (measurements, not model outputs, so the
  training fold is fair game and much larger than validation);
- the head's calibrated logit and that RR logit -> AF, on the validation rows, where the head's
  logit is as confident as it will be on new records (on CinC 2017's training fold the shipped
  rhythm head reached window AUROC 0.993, on fold 9 0.956).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ecgmoe_cli.model.rhythm_evidence import N_RR_FEATURES, RhythmEvidence, rr_irregularity

RR_L2 = 10.0  # ridge penalty of the RR regression (standardised features; ~20,000 windows)
FUSE_L2 = 1.0  # of the two-input fusion (~2,000 validation windows)
MIN_POSITIVES = 10  # fewer AF windows in either fit: no evidence (it would learn noise)
_CHUNK = 8192


def window_rr_features(ds: Any, rows: np.ndarray) -> np.ndarray:
    """(len(rows), F) RR statistics of dataset rows, as `encode` computes them."""
    out = [np.zeros((0, N_RR_FEATURES), np.float32)]
    for i in range(0, len(rows), _CHUNK):
        a = ds.read(rows[i:i + _CHUNK], ("rr", "rpeaks"))
        out.append(rr_irregularity(torch.from_numpy(a["rr"][:, :, 0].astype(np.float32)),
                                   torch.from_numpy(a["rpeaks"] >= 0)).numpy())
    return np.concatenate(out)


def logistic(x: np.ndarray, y: np.ndarray, l2: float, iters: int = 50) -> tuple[np.ndarray, float]:
    """Ridge logistic regression by Newton's method (the intercept is not penalised)."""
    X = np.hstack([np.asarray(x, np.float64), np.ones((len(x), 1))])
    w = np.zeros(X.shape[1])
    pen = np.full(X.shape[1], l2)
    pen[-1] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(X @ w, -30, 30)))
        grad = X.T @ (p - y) + pen * w
        hess = (X * (p * (1 - p))[:, None]).T @ X + np.diag(pen + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w[:-1], float(w[-1])


def fit_evidence(label: str, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
                 logit_val: np.ndarray, y_val: np.ndarray) -> RhythmEvidence | None:
    """The evidence for `label`, or None when either fold holds too few known positives."""
    kt, kv = np.isfinite(y_train), np.isfinite(y_val) & np.isfinite(logit_val)
    if min(y_train[kt].sum(), y_val[kv].sum()) < MIN_POSITIVES:
        return None
    mean = x_train[kt].mean(0)
    scale = x_train[kt].std(0)
    scale = np.where(scale > 1e-6, scale, 1.0)
    coef, intercept = logistic((x_train[kt] - mean) / scale, y_train[kt], RR_L2)
    rr_val = ((x_val[kv] - mean) / scale) @ coef + intercept
    (weight, rr_weight), bias = logistic(np.stack([logit_val[kv], rr_val], 1), y_val[kv], FUSE_L2)
    return RhythmEvidence(label, tuple(map(float, mean)), tuple(map(float, scale)),
                          tuple(map(float, coef)), intercept, float(weight), float(rr_weight),
                          bias)
