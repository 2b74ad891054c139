"""NumPy metrics against brute-force definitions, and calibration."""

from __future__ import annotations

import numpy as np
import pytest

from ecgmoe_cli.training import metrics as m
from ecgmoe_cli.training.calibrate import fit_residual_weight, fit_temperature, fit_thresholds, nll


def _pairwise_auroc(y, s):
    pos, neg = s[y == 1][:, None], s[y == 0][None, :]
    return ((pos > neg) + 0.5 * (pos == neg)).mean()


@pytest.mark.parametrize("seed", range(20))
def test_auroc_matches_pairwise_count_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    s = rng.integers(0, 6, n).astype(float)  # many ties
    assert m.auroc(y, s) == pytest.approx(_pairwise_auroc(y, s), abs=1e-12)


def test_auroc_single_class_is_nan():
    assert np.isnan(m.auroc(np.ones(4), np.arange(4.0)))


@pytest.mark.parametrize("seed", range(10))
def test_best_threshold_reaches_the_brute_force_best_f1(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 30)
    y[0] = 1
    p = rng.integers(0, 8, 30) / 8
    thr, f1 = m.best_f1_threshold(y, p)
    brute = max(m.f1_score(y, p >= c) for c in np.unique(p))
    assert f1 == pytest.approx(brute) and m.f1_score(y, p >= thr) == pytest.approx(brute)


def test_f1_macro_accuracy_mae_ece_by_hand():
    y, pred = np.array([1, 1, 0, 0, 1]), np.array([1, 0, 0, 1, 1])
    assert m.f1_score(y, pred) == pytest.approx(2 * 2 / (3 + 3))
    yc, pc = np.array([0, 1, 2, 2]), np.array([0, 2, 2, 2])
    assert m.accuracy(yc, pc) == 0.75
    assert m.macro_f1(yc, pc, 3) == pytest.approx((1 + 0 + 2 * 2 / 5) / 3)
    assert m.mae(np.array([1.0, 3.0]), np.array([2.0, 0.0])) == 2.0
    # two bins: probs 0.05 (label 0, 1) and 0.95 (label 1, 1): gaps |0.5-0.05|, |1-0.95|
    ece = m.expected_calibration_error(np.array([0, 1, 1, 1]), np.array([0.05, 0.05, 0.95, 0.95]))
    assert ece == pytest.approx((2 * 0.45 + 2 * 0.05) / 4)


def test_bootstrap_ci_brackets_the_estimate():
    rng = np.random.default_rng(0)
    y, p = rng.normal(size=200), rng.normal(size=200)
    lo, hi = m.bootstrap_ci(m.mae, y, p, n_boot=100)
    assert lo < m.mae(y, p) < hi and hi - lo < 0.5


def test_temperature_undoes_overconfidence_and_thresholds_maximise_f1():
    rng = np.random.default_rng(0)
    true_logit = rng.normal(0, 1.5, 4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-true_logit))).astype(float)
    t = fit_temperature("binary", 3.0 * true_logit, y)  # 3x overconfident
    assert t == pytest.approx(3.0, rel=0.15)
    assert nll("binary", 3 * true_logit, y, t) < nll("binary", 3 * true_logit, y, 1.0)
    probs = np.stack([1 / (1 + np.exp(-true_logit))] * 2, 1)
    ys = np.stack([y, 1 - y], 1)
    thr = fit_thresholds(probs, ys)
    for j in range(2):
        best = max(m.f1_score(ys[:, j], probs[:, j] >= c) for c in np.linspace(0, 1, 101))
        assert m.f1_score(ys[:, j], probs[:, j] >= thr[j]) >= best - 1e-9


def test_residual_weight_keeps_a_correction_that_helps_and_drops_one_that_only_adds_error():
    rng = np.random.default_rng(0)
    truth = rng.normal(800, 100, 500)
    measured = truth + rng.choice([0.0, 40.0], 500)  # the detector sometimes 40 ms long
    helpful = truth - measured
    assert fit_residual_weight(helpful, measured, truth) == 1.0
    assert fit_residual_weight(rng.normal(0, 50, 500), truth, truth) == 0.0  # exact already
    half = fit_residual_weight(2 * helpful, measured, truth)
    assert half == pytest.approx(0.5)
    y = truth.copy()
    y[:10] = np.nan  # unknown targets are left out
    assert fit_residual_weight(helpful, measured, y) == 1.0
