"""Evaluation metrics in plain NumPy (no sklearn): AUROC by ranks, F1, ECE, MAE, bootstrap CIs."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties get the mean of the ranks they span."""
    x = np.asarray(x, np.float64)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    # start index of each run of equal values
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], len(xs)]
    run_rank = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


def auroc(y: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney AUROC (ties count 1/2); NaN when one class is absent."""
    y = np.asarray(y).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = average_ranks(score)
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def f1_score(y: np.ndarray, pred: np.ndarray) -> float:
    y, pred = np.asarray(y).astype(bool), np.asarray(pred).astype(bool)
    tp = float((y & pred).sum())
    denom = float(y.sum() + pred.sum())
    return 2 * tp / denom if denom else 0.0


def best_f1_threshold(y: np.ndarray, prob: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) maximising F1 over every distinct score (midpoints between them)."""
    y = np.asarray(y).astype(bool)
    prob = np.asarray(prob, np.float64)
    if y.sum() == 0 or len(y) == 0:
        return 0.5, 0.0
    order = np.argsort(-prob, kind="mergesort")
    ps, ys = prob[order], y[order]
    last = np.r_[ps[1:] != ps[:-1], True]  # predict positive for all scores >= ps[i]
    tp = np.cumsum(ys)[last]
    n_pred = (np.arange(len(ps)) + 1)[last]
    f1 = 2 * tp / (n_pred + y.sum())
    i = int(np.argmax(f1))
    cut = ps[last][i]
    below = ps[last][i + 1] if i + 1 < last.sum() else cut - 1e-6
    return float((cut + below) / 2), float(f1[i])


def expected_calibration_error(y: np.ndarray, prob: np.ndarray, n_bins: int = 10) -> float:
    """Mean |accuracy - confidence| over equal-width probability bins, weighted by count."""
    y, prob = np.asarray(y, np.float64), np.asarray(prob, np.float64)
    if len(y) == 0:
        return float("nan")
    bins = np.clip((prob * n_bins).astype(int), 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    gap = np.abs(np.bincount(bins, y, n_bins) - np.bincount(bins, prob, n_bins))
    return float(gap.sum() / count.sum())


def accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    y, pred = np.asarray(y), np.asarray(pred)
    return float((y == pred).mean()) if len(y) else float("nan")


def macro_f1(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """Mean one-vs-rest F1 over the classes present in `y` or `pred`."""
    y, pred = np.asarray(y), np.asarray(pred)
    present = [c for c in range(n_classes) if (y == c).any() or (pred == c).any()]
    return float(np.mean([f1_score(y == c, pred == c) for c in present])) if present else 0.0


def mae(y: np.ndarray, pred: np.ndarray) -> float:
    y, pred = np.asarray(y, np.float64), np.asarray(pred, np.float64)
    return float(np.abs(y - pred).mean()) if len(y) else float("nan")


def bootstrap_ci(metric: Callable[..., float], *arrays: np.ndarray, n_boot: int = 200,
                 seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of metric(*arrays) resampling rows; NaN resamples are skipped."""
    n = len(arrays[0])
    if n == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        v = metric(*(a[idx] for a in arrays))
        if np.isfinite(v):
            vals.append(v)
    if not vals:
        return float("nan"), float("nan")
    lo, hi = np.percentile(vals, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return float(lo), float(hi)
