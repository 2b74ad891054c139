"""R-peak detector against cardiologist annotations and synthetic beats; RR, windows, rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecgmoe_cli.signal.beats import beat_windows, detect_rpeaks, heart_rate_bpm, rr_features
from ecgmoe_cli.signal.spec import PreprocessSpec

BEAT_SYMBOLS = set("NLRBAaJSVrFejnE/fQ?")
# (offset s from R, amplitude mV, width s): P, Q, R, S, T of a lead II-like beat
WAVES = [(-0.2, 0.15, 0.025), (-0.03, -0.12, 0.01), (0.0, 1.0, 0.012), (0.03, -0.3, 0.012), (0.3, 0.35, 0.05)]
WIDE = [(-0.05, 0.3, 0.03), (0.0, -1.6, 0.035), (0.07, 0.4, 0.03), (0.35, 0.5, 0.07)]  # a wide PVC


def synth(fs: float, rr_s: list[float], *, seed: int = 0, noise: float = 0.02,
          pvc_every: int = 0, start_s: float = 0.6, t_amp: float = 0.35) -> tuple[np.ndarray, np.ndarray]:
    """A one-lead ECG with baseline wander and noise; returns (signal, true R indices)."""
    rng = np.random.default_rng(seed)
    r_times = start_s + np.concatenate([[0.0], np.cumsum(rr_s)])
    n = int((r_times[-1] + 1.0) * fs)
    t = np.arange(n) / fs
    x = 0.3 * np.sin(2 * np.pi * 0.25 * t) + noise * rng.standard_normal(n)
    r_idx = []
    for k, rt in enumerate(r_times):
        waves = WIDE if pvc_every and k % pvc_every == pvc_every - 1 else WAVES[:-1] + [(0.3, t_amp, 0.05)]
        lo, hi = int((rt - 0.5) * fs), min(int((rt + 0.7) * fs), n)
        seg = t[max(lo, 0):hi]
        for off, amp, width in waves:
            x[max(lo, 0):hi] += amp * np.exp(-0.5 * ((seg - rt - off) / width) ** 2)
        r_idx.append(int(round(rt * fs)))  # both shapes peak at offset 0
    return x.astype(np.float32), np.asarray(r_idx, dtype=np.int64)


def score(ref: np.ndarray, test: np.ndarray, tol: int) -> tuple[int, int, int]:
    """(tp, fp, fn) with one-to-one matching within tol samples."""
    used = np.zeros(test.size, dtype=bool)
    tp = 0
    for r in ref:
        j = np.flatnonzero(~used & (np.abs(test - r) <= tol))
        if j.size:
            used[j[np.argmin(np.abs(test[j] - r))]] = True
            tp += 1
    return tp, int((~used).sum()), int(ref.size - tp)


def real_beats(path: Path) -> tuple[np.ndarray, float, np.ndarray]:
    import wfdb

    rec = wfdb.rdrecord(str(path), channels=[0])
    ann = wfdb.rdann(str(path), "atr")
    ref = np.array([s for s, sym in zip(ann.sample, ann.symbol) if sym in BEAT_SYMBOLS])
    return rec.p_signal[:, 0], float(rec.fs), ref


@pytest.mark.parametrize("name", ["wfdb-sample/100", "svdb/800"])
def test_meets_the_bar_on_mitbih(real_dir: Path, name: str) -> None:
    from wfdb.processing import compare_annotations

    x, fs, ref = real_beats(real_dir / name)
    peaks = detect_rpeaks(x, fs)
    c = compare_annotations(ref, peaks, int(0.150 * fs))
    assert c.tp / (c.tp + c.fn) >= 0.998 and c.tp / (c.tp + c.fp) >= 0.998, (c.tp, c.fp, c.fn)
    assert peaks.dtype == np.int64 and np.all(np.diff(peaks) > 0)
    # R-peak, not QRS centre: most beats sit within 3 samples of the cardiologist's mark.
    err = np.abs(ref[c.matched_ref_inds] - peaks[c.matched_test_inds])
    assert np.median(err) <= 3


@pytest.mark.parametrize("fs", [100, 128, 250, 360, 500, 1000])
def test_synthetic_rate_and_positions(fs: int) -> None:
    x, truth = synth(fs, [0.8] * 30, seed=fs)
    peaks = detect_rpeaks(x, fs)
    tp, fp, fn = score(truth, peaks, int(0.02 * fs) + 1)
    assert (tp, fp, fn) == (truth.size, 0, 0)
    assert heart_rate_bpm(peaks, fs) == pytest.approx(75.0, abs=1.0)


def test_inverted_wide_beats_tachycardia_and_pause() -> None:
    fs = 250
    rr = [0.85] * 10 + [0.28] * 25 + [2.6] + [0.9] * 10  # sinus, 214 bpm run, a pause
    x, truth = synth(fs, rr, seed=1, pvc_every=4)
    for sign in (1.0, -1.0):
        peaks = detect_rpeaks(sign * x, fs)
        assert score(truth, peaks, int(0.06 * fs)) == (truth.size, 0, 0)


def test_tall_t_waves_are_not_beats() -> None:
    fs = 250
    x, truth = synth(fs, list(np.random.default_rng(6).uniform(0.55, 1.1, 60)), seed=6, t_amp=0.9)
    peaks = detect_rpeaks(x, fs)
    assert score(truth, peaks, int(0.02 * fs)) == (truth.size, 0, 0)


def test_sudden_amplitude_drop_is_followed() -> None:
    fs = 360
    x, truth = synth(fs, [0.75] * 40, seed=2, noise=0.005)
    half = x.size // 2
    x[half:] *= 0.2  # electrode change: beats 5x smaller from here on
    peaks = detect_rpeaks(x, fs)
    tp, fp, fn = score(truth, peaks, int(0.02 * fs))
    assert fp == 0 and fn <= 1


def test_multilead_ignores_a_noisy_flat_and_missing_lead() -> None:
    fs = 500
    x, truth = synth(fs, [0.9] * 30, seed=3)
    rng = np.random.default_rng(4)
    noisy = 0.05 * rng.standard_normal(x.size)
    for start in range(fs, x.size - fs, 3 * fs):  # motion artifact bursts
        noisy[start : start + fs // 2] += 1.5 * np.sin(np.linspace(0, 40 * np.pi, fs // 2))
    leads = np.vstack([x, 0.6 * x, noisy, np.zeros_like(x), np.full_like(x, np.nan)])
    peaks = detect_rpeaks(leads, fs)
    assert score(truth, peaks, int(0.02 * fs)) == (truth.size, 0, 0)


@pytest.mark.parametrize(
    "signal",
    [np.zeros(0), np.zeros(10), np.zeros(5000), np.full(5000, np.nan), np.ones((3, 5000)),
     np.zeros((0, 5000)), np.zeros((2, 0)), np.full((2, 5000), np.inf)],
)
def test_degenerate_input_gives_no_beats(signal: np.ndarray) -> None:
    peaks = detect_rpeaks(signal, 250.0)
    assert peaks.dtype == np.int64 and peaks.size == 0


def test_nan_gap_keeps_the_beats_around_it() -> None:
    fs = 250
    x, truth = synth(fs, [0.8] * 30, seed=5)
    gap = slice(10 * fs, 13 * fs)
    x[gap] = np.nan
    peaks = detect_rpeaks(x, fs)
    outside = truth[(truth < gap.start - fs // 5) | (truth > gap.stop + fs // 5)]
    tp, fp, fn = score(outside, peaks, int(0.02 * fs))
    assert fn == 0
    assert not np.any((peaks > gap.start + fs // 2) & (peaks < gap.stop - fs // 2))


def test_rr_features_on_a_spike_train() -> None:
    fs = 100.0
    r = np.array([0, 100, 250, 350, 450])  # RR 1.0, 1.5, 1.0, 1.0 s
    f = rr_features(r, fs)
    assert f.shape == (5, 4) and f.dtype == np.float32
    np.testing.assert_allclose(f[:, 0], [1.0, 1.0, 1.5, 1.0, 1.0])  # first borrows its neighbour
    np.testing.assert_allclose(f[:, 1], [1.0, 1.5, 1.0, 1.0, 1.0])  # last borrows its neighbour
    np.testing.assert_allclose(f[:, 3], f[:, 0] / f[:, 2], rtol=1e-6)
    steady = rr_features(np.arange(20) * 80, fs)  # constant 0.8 s: local mean 0.8, ratio 1
    np.testing.assert_allclose(steady[:, 2:], np.tile([0.8, 1.0], (20, 1)), rtol=1e-6)
    early = rr_features(np.r_[np.arange(10) * 80, 10 * 80 - 30, np.arange(11, 20) * 80], fs)
    assert early[10, 3] < 0.7 and early[11, 3] > 1.2  # a premature beat and its pause
    assert rr_features(np.zeros(0, dtype=np.int64), fs).shape == (0, 4)


def test_beat_windows_gather_and_pad() -> None:
    spec = PreprocessSpec(fs=100.0, max_beats=4, beat_pre_s=0.1, beat_post_s=0.2)
    n_leads, n = 2, 300
    x = (np.arange(n)[None, :] + 1000 * np.arange(n_leads)[:, None]).astype(np.float32)
    r = np.array([5, 150, 295])  # the first and last windows run off the signal
    beats, mask = beat_windows(x, r, spec)
    assert beats.shape == (4, n_leads, spec.beat_samples) and beats.dtype == np.float32
    assert mask.tolist() == [True, True, True, False]
    for k, peak in enumerate(r):
        idx = peak - spec.beat_pre + np.arange(spec.beat_samples)
        inside = (idx >= 0) & (idx < n)
        for lead in range(n_leads):
            np.testing.assert_array_equal(beats[k, lead, inside], x[lead, idx[inside]])
            assert np.all(beats[k, lead, ~inside] == 0)
    assert np.all(beats[3] == 0)
    many, many_mask = beat_windows(x, np.arange(20, 280, 20), spec)
    assert many_mask.all() and many[0, 0, spec.beat_pre] == 20  # first K beats kept
    empty, empty_mask = beat_windows(x, np.zeros(0, dtype=np.int64), spec)
    assert not empty_mask.any() and not empty.any()


def test_heart_rate_needs_two_beats() -> None:
    assert np.isnan(heart_rate_bpm(np.array([10]), 250.0))
    assert np.isnan(heart_rate_bpm(np.zeros(0, dtype=np.int64), 250.0))
    assert heart_rate_bpm(np.array([0, 125, 250, 400]), 250.0) == pytest.approx(120.0)


def test_numpy_helpers_equal_the_scipy_functions_they_replace() -> None:
    """The detector's peak picking and running filters are NumPy re-writes (SciPy's signal and
    ndimage cost 0.85 s to import per run); they must give SciPy's exact answers."""
    from scipy.ndimage import median_filter, uniform_filter1d
    from scipy.signal import find_peaks

    from ecgmoe_cli.signal.beats import _median, _moving_mean, _peaks, _running_median

    rng = np.random.default_rng(0)
    for trial in range(400):
        n = int(rng.integers(3, 300))
        x = rng.normal(size=n) if trial % 2 else np.round(rng.normal(size=n).cumsum(), 1)
        x = np.minimum(x, rng.uniform(0, 3))  # plateaus at the top
        dist, height = int(rng.integers(1, 30)), float(rng.uniform(-1, 1))
        np.testing.assert_array_equal(_peaks(x, height, dist),
                                      find_peaks(x, height=height, distance=dist)[0])
        a = rng.normal(size=(3, n))
        size = int(rng.integers(1, 40))
        np.testing.assert_allclose(_moving_mean(a, size),
                                   uniform_filter1d(a, size, axis=1, mode="nearest"), atol=1e-12)
        odd = size | 1
        np.testing.assert_array_equal(_running_median(a, odd),
                                      median_filter(a, size=(1, odd), mode="nearest"))
        np.testing.assert_array_equal(_median(a, axis=1), np.median(a, axis=1))
