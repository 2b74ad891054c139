"""Signal hygiene: NaN repair, saturation, resampling without aliasing, band-pass."""

from __future__ import annotations

import numpy as np

from ecgmoe_cli.signal.clean import (
    bandpass,
    clean,
    nan_repair,
    resample_filter,
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
    y = resample_filter(np.sin(2 * np.pi * 10 * t)[None], 500, 250)
    ref = np.sin(2 * np.pi * 10 * np.arange(2500) / 250)
    assert y.shape == (1, 2500) and np.abs(y[0, 50:-50] - ref[50:-50]).max() < 0.01
    # 240 Hz would fold onto 10 Hz at 250 Hz: the anti-aliasing filter must remove it
    assert np.abs(resample_filter(np.sin(2 * np.pi * 240 * t)[None], 500, 250)).max() < 0.05


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


def test_bandpass_is_sosfiltfilt_of_the_butterworth_filter() -> None:
    """The FFT band-pass applies the exact |H|^2 of scipy's Butterworth design: away from the
    record's edges it matches sosfiltfilt (which has its own edge transients)."""
    from scipy.signal import butter, sosfiltfilt, sosfreqz

    from ecgmoe_cli.signal.clean import butter_gain

    for fs, band in [(250.0, (0.5, 45.0)), (180.0, (5.0, 20.0)), (250.0, (0.0, 40.0))]:
        sos = butter(2, band[1] if band[0] == 0 else list(band),
                     btype="low" if band[0] == 0 else "band", fs=fs, output="sos")
        f, h = sosfreqz(sos, worN=512, fs=fs)
        np.testing.assert_allclose(butter_gain(f, fs, band, 2), np.abs(h) ** 2, atol=1e-9)
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.normal(size=(3, 30 * 250)), axis=1).astype(np.float32) * 0.01
    x += np.sin(2 * np.pi * 8 * np.arange(x.shape[1]) / 250)
    ref = sosfiltfilt(butter(2, [0.5, 45.0], btype="band", fs=250, output="sos"), x, axis=1,
                      padlen=2500)
    y = bandpass(x, 250, (0.5, 45.0), 2)
    core = slice(5 * 250, -5 * 250)
    assert np.abs(y[:, core] - ref[:, core]).max() < 1e-3 * np.abs(ref[:, core]).max()


def test_resample_matches_polyphase_resampling_away_from_the_edges() -> None:
    from scipy.signal import resample_poly

    t = np.arange(20 * 360) / 360
    x = (np.sin(2 * np.pi * 1.3 * t) + 0.5 * np.sin(2 * np.pi * 17 * t))[None]
    y = resample_filter(x, 360, 250)
    ref = resample_poly(x, 25, 36, axis=1)
    assert y.shape == ref.shape == (1, 5000)
    assert np.abs(y[:, 500:-500] - ref[:, 500:-500]).max() < 0.01
