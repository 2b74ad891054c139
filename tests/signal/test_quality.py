"""Signal-quality index: clean ECG high, noise, flat and clipped leads low, always in [0, 1]."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecgmoe_cli.io.records.read import read_record
from ecgmoe_cli.io.records.record import Record
from ecgmoe_cli.pipeline.prepare import prepare_from_record, prepare_record
from ecgmoe_cli.signal.leads import CANONICAL_LEADS
from ecgmoe_cli.signal.quality import (
    LOW_QUALITY,
    agreement,
    record_quality,
    slope_beats,
    template_correlation,
    window_quality,
)
from ecgmoe_cli.signal.spec import PreprocessSpec
from ecgmoe_cli.simulate.diagnosis import Diagnosis
from ecgmoe_cli.simulate.synthetic import synthesize

SPEC = PreprocessSpec()
FS = 500.0


def _record(x: np.ndarray, fs: float = FS) -> Record:
    return Record("x.hea", "x", x.astype(np.float32), fs, list(CANONICAL_LEADS[:x.shape[0]]))


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    """20 s of a simulated normal 12-lead ECG with its recording artefacts (wander, mains)."""
    return synthesize(7, 0, FS, 20.0, dx=Diagnosis(age=50, female=True, findings=set())).signal


def test_clean_ecg_scores_high_in_every_window(clean: np.ndarray) -> None:
    p = prepare_from_record(_record(clean), SPEC)
    assert p.window_quality.shape == (2,) and (p.window_quality > 0.9).all()
    assert p.quality == pytest.approx(p.window_quality.mean(), abs=1e-6)


def test_real_12_lead_and_single_lead_records_score_high(real_dir: Path) -> None:
    assert prepare_record(real_dir / "cinc2021/E07500.hea", SPEC).quality > 0.9
    lead_ii = read_record(real_dir / "wfdb-sample/100.hea")
    lead_ii = replace(lead_ii, signal=lead_ii.signal[:1, :360 * 60],  # a minute of MLII
                      lead_names=lead_ii.lead_names[:1])
    assert prepare_from_record(lead_ii, SPEC).quality > 0.9


@pytest.mark.parametrize("leads", [1, 2, 12])
def test_gaussian_noise_scores_under_the_threshold(leads: int) -> None:
    rng = np.random.default_rng(leads)
    for sd in (0.05, 0.5, 2.0):
        p = prepare_from_record(_record(rng.normal(0, sd, (leads, 5000))), SPEC)
        assert p.quality < LOW_QUALITY / 2, (leads, sd)


def test_noise_and_motion_lower_the_quality_of_an_ecg(clean: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    scale = clean.std(axis=1, keepdims=True)
    t = np.arange(clean.shape[1]) / FS
    motion = 3.0 * np.sin(2 * np.pi * 2.5 * t) * (np.sin(2 * np.pi * 0.3 * t) > 0)
    q = [prepare_from_record(_record(x), SPEC).quality for x in
         (clean, clean + rng.normal(0, 3, clean.shape) * scale, clean + motion)]
    assert q[0] > 0.9 and q[1] < LOW_QUALITY and q[2] < LOW_QUALITY


def test_a_flat_window_scores_zero_and_the_others_keep_their_quality(clean: np.ndarray) -> None:
    x = clean.copy()
    x[:, 10 * int(FS):] = 0.0  # the second 10 s: every lead flat (a lead-off)
    p = prepare_from_record(_record(x), SPEC)
    assert p.window_quality[0] > 0.9 and p.window_quality[1] == 0.0
    assert p.quality == pytest.approx(p.window_quality.mean(), abs=1e-6)


def test_flat_masked_or_clipped_leads_count_against_the_window(clean: np.ndarray) -> None:
    x = clean.copy()
    x[6:] = 0.0  # V1-V6 flat: masked
    half = prepare_from_record(_record(x), SPEC).window_quality
    lim = np.quantile(np.abs(clean), 0.85, axis=1, keepdims=True)  # 15 % of samples stuck
    clipped = prepare_from_record(_record(np.clip(clean, -lim, lim)), SPEC).window_quality
    assert np.allclose(half, 0.5, atol=0.05) and (clipped < LOW_QUALITY).all()


def test_window_quality_of_a_flat_or_beatless_span_is_zero() -> None:
    y = np.zeros((3, 2500), np.float32)
    usable, clipped = np.ones((3, 1), bool), np.zeros((3, 1))
    starts, n_valid = np.zeros(1, np.int64), np.full(1, 2500)
    for peaks in (np.zeros(0, np.int64), np.arange(100, 2500, 200)):
        q = window_quality(y, usable, clipped, starts, n_valid, peaks, np.array([0]), 250.0)
        assert q.tolist() == [0.0]


def test_the_second_detector_finds_the_beats_and_agreement_scores_them(clean: np.ndarray) -> None:
    p = prepare_from_record(_record(clean[:1]), SPEC)
    y = p.signal[:, 0].reshape(1, -1)  # lead I, windows back to back at 250 Hz
    truth = (p.rpeaks[p.rpeaks >= 0] + np.repeat(np.arange(2) * 2500, (p.rpeaks >= 0).sum(1)))
    found = slope_beats(y[0], SPEC.fs)
    lo, hi = np.array([0, 2500]), np.array([2500, 5000])
    assert (agreement(truth, found, lo, hi, SPEC.fs) > 0.95).all()
    assert agreement(truth, truth + 100, lo, hi, SPEC.fs).tolist() == [0.0, 0.0]  # 0.4 s off
    assert agreement(truth, np.zeros(0, np.int64), lo, hi, SPEC.fs).tolist() == [0.0, 0.0]
    corr, count = template_correlation(y, truth, lo, hi, SPEC.fs)
    assert (corr > 0.9).all() and (count >= 8).all()


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31), st.sampled_from([1, 3, 12]), st.floats(0.01, 20.0),
       st.sampled_from([2000, 5000, 12000]))
def test_quality_is_always_in_0_1(seed: int, leads: int, sd: float, n: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, sd, (leads, n)) + rng.standard_cauchy((leads, n)) * 0.01 * sd
    x[:, rng.integers(0, n, 5)] = sd * 50  # spikes
    p = prepare_from_record(_record(x), SPEC)
    assert np.isfinite(p.window_quality).all()
    assert ((p.window_quality >= 0) & (p.window_quality <= 1)).all() and 0 <= p.quality <= 1


def test_record_quality_weights_windows_by_length() -> None:
    assert record_quality(np.array([1.0, 0.0]), np.array([2500, 1250])) == pytest.approx(2 / 3)
    assert record_quality(np.zeros(0), np.zeros(0)) == 0.0


def test_a_clean_lead_beside_a_noisy_spiky_one_keeps_the_window_readable(clean: np.ndarray
                                                                         ) -> None:
    """A Holter's second lead, small, noisy and with one artefact spike that makes it look the
    spikiest: the second detector checks the beats on every lead the detector read, so the
    clean lead carries the windows (MIT-BIH 101 read half its windows as low quality)."""
    rng = np.random.default_rng(3)
    second = 0.3 * clean[1] + rng.normal(0, 0.5 * clean[1].std(), clean.shape[1])
    second[int(3.1 * FS)] += 40 * clean[1].std()  # one artefact spike
    x = np.stack([clean[1], second])
    q = prepare_from_record(_record(x), SPEC).window_quality
    assert (q >= LOW_QUALITY).all(), q
