"""Signal hygiene: NaN repair, saturation, resampling without aliasing, band-pass."""

from __future__ import annotations

import numpy as np

from ecgmoe_cli.signal.clean import (
    bandpass,
    clean,
    nan_repair,
    resample,
    resample_ratio,
    stuck_mask,
)
from ecgmoe_cli.signal.spec import PreprocessSpec


def test_short_nan_runs_are_interpolated_long_ones_reported() -> None:
    x = np.tile(np.linspace(0, 1, 1000, dtype=np.float32), (2, 1))
    x[0, 100:110] = np.nan  # 40 ms at 250 Hz: interpolated
    x[1, 200:400] = np.nan  # 0.8 s: too long
    y, long_gap = nan_repair(x, 250, 0.25)
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y[0, 100:110], np.linspace(0, 1, 1000)[100:110], atol=1e-6)
    assert not long_gap[0].any() and long_gap[1, 200:400].all() and long_gap[1].sum() == 200


def test_all_nan_lead_is_zero_and_masked() -> None:
    x = np.full((1, 100), np.nan, np.float32)
    y, gap = nan_repair(x, 100, 0.25)
    assert (y == 0).all() and gap.all()


def test_stuck_mask_marks_rails() -> None:
    x = np.array([[0.0, 5.0, 5.0, 1.0, -5.0, np.nan]])
    assert stuck_mask(x).tolist() == [[False, True, True, False, True, False]]


def test_resample_ratios_and_no_aliasing() -> None:
    assert resample_ratio(500, 250) == (1, 2) and resample_ratio(360, 250) == (25, 36)
    assert resample_ratio(128, 250) == (125, 64)
    t = np.arange(5000) / 500
    y = resample(np.sin(2 * np.pi * 10 * t)[None], 500, 250)
    ref = np.sin(2 * np.pi * 10 * np.arange(2500) / 250)
    assert y.shape == (1, 2500) and np.abs(y[0, 50:-50] - ref[50:-50]).max() < 0.01
    # 240 Hz would fold onto 10 Hz at 250 Hz: the anti-aliasing filter must remove it
    assert np.abs(resample(np.sin(2 * np.pi * 240 * t)[None], 500, 250)).max() < 0.05


def test_bandpass_removes_wander_and_high_noise_keeps_qrs_band() -> None:
    fs = 250
    t = np.arange(10 * fs) / fs
    keep = np.sin(2 * np.pi * 10 * t)
    x = (keep + 2 * np.sin(2 * np.pi * 0.05 * t) + np.sin(2 * np.pi * 110 * t)).astype(np.float32)
    y = bandpass(x[None], fs, (0.5, 45.0), 2)[0]
    assert np.abs(y[250:-250] - keep[250:-250]).max() < 0.1


def test_clean_outputs_spec_rate_clipped() -> None:
    spec = PreprocessSpec()
    x = np.zeros((2, 5000), np.float32)
    x[0, ::500] = 100.0  # spikes far beyond clip_mv
    x[1, 1000:2000] = np.nan
    y, gaps, stuck = clean(x, 500, spec)
    assert y.shape == (2, 2500) and gaps.shape == y.shape and stuck.shape == y.shape
    assert np.abs(y).max() <= spec.clip_mv
    assert gaps[1, 500:1000].all() and (y[1, 500:1000] == 0).all()
