"""R-peak detector against cardiologist annotations and synthetic beats; RR, windows, rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecgmoe_cli.io.labels.atr import BEAT_SYMBOLS
from ecgmoe_cli.signal.beats import heart_rate_bpm, irregular_intervals, rr_features
from ecgmoe_cli.signal.rpeaks import detect_rpeaks

# (offset s from R, amplitude mV, width s): P, Q, R, S, T of a lead II-like beat
WAVES = [(-0.2, 0.15, 0.025), (-0.03, -0.12, 0.01), (0.0, 1.0, 0.012), (0.03, -0.3, 0.012),
         (0.3, 0.35, 0.05)]
WIDE = [(-0.05, 0.3, 0.03), (0.0, -1.6, 0.035), (0.07, 0.4, 0.03), (0.35, 0.5, 0.07)]  # a wide PVC
PVC_LOW = [(0.0, -1.0, 0.03), (0.32, 0.45, 0.07)]  # as tall as the R wave, a third of its slope
PVC_UP = [(-0.03, 0.5, 0.02), (0.03, 1.1, 0.025), (0.34, -0.4, 0.08)]  # upright: another focus
ABERRANT = [(0.0, 0.6, 0.025), (0.3, 0.2, 0.06)]  # smaller and wider (aberrant conduction)
RATES = [128, 250, 360, 500, 1000]


def synth(fs: float, rr_s: list[float], *, seed: int = 0, noise: float = 0.02,
          pvc_every: int = 0, start_s: float = 0.6,
          t_amp: float = 0.35) -> tuple[np.ndarray, np.ndarray]:
    """A one-lead ECG with baseline wander and noise; returns (signal, true R indices)."""
    rng = np.random.default_rng(seed)
    r_times = start_s + np.concatenate([[0.0], np.cumsum(rr_s)])
    n = int((r_times[-1] + 1.0) * fs)
    t = np.arange(n) / fs
    x = 0.3 * np.sin(2 * np.pi * 0.25 * t) + noise * rng.standard_normal(n)
    r_idx = []
    for k, rt in enumerate(r_times):
        pvc = pvc_every and k % pvc_every == pvc_every - 1
        waves = WIDE if pvc else WAVES[:-1] + [(0.3, t_amp, 0.05)]
        lo, hi = int((rt - 0.5) * fs), min(int((rt + 0.7) * fs), n)
        seg = t[max(lo, 0):hi]
        for off, amp, width in waves:
            x[max(lo, 0):hi] += amp * np.exp(-0.5 * ((seg - rt - off) / width) ** 2)
        r_idx.append(int(round(rt * fs)))  # both shapes peak at offset 0
    return x.astype(np.float32), np.asarray(r_idx, dtype=np.int64)


def beat_train(fs: float, shapes: list[list[tuple[float, float, float]] | None], rr_s: list[float],
               *, seed: int = 0, p_amp: float = 0.15,
               pr_s: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """One lead with wander and noise where beat k has the waves shapes[k] (None: the sinus
    beat, its P wave p_amp tall pr_s before R); returns (signal, true R indices)."""
    rng = np.random.default_rng(seed)
    r_times = 0.6 + np.concatenate([[0.0], np.cumsum(rr_s)])
    n = int((r_times[-1] + 1.0) * fs)
    t = np.arange(n) / fs
    x = 0.3 * np.sin(2 * np.pi * 0.25 * t) + 0.02 * rng.standard_normal(n)
    sinus = [(-pr_s, p_amp, 0.025)] + WAVES[1:]
    for rt, shape in zip(r_times, shapes):
        lo, hi = max(int((rt - 0.5) * fs), 0), min(int((rt + 0.7) * fs), n)
        for off, amp, width in shape or sinus:
            x[lo:hi] += amp * np.exp(-0.5 * ((t[lo:hi] - rt - off) / width) ** 2)
    return x.astype(np.float32), np.round(r_times * fs).astype(np.int64)


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


def test_meets_the_bar_on_mitbih_ds1(train_dir: Path) -> None:
    """Issue 23: aggregate Se and PPV >= 99.8 % on the 22 MIT-BIH DS1 records (first channel,
    150 ms; 207's ventricular flutter, which has no beat labels, left out as in EC57). Per
    record the floor is 98 %: 203 (multiform PVCs in noise) and 108 (P waves as tall and
    steep as its QRS, noise) stay under the issue's 99 % (BENCHMARKS.md, issue 23)."""
    import wfdb
    from wfdb.processing import compare_annotations

    paths = sorted((train_dir / "mitdb").glob("*.atr"))
    assert len(paths) == 22, paths
    total = np.zeros(3, dtype=np.int64)
    for path in paths:
        x, fs, ref = real_beats(path.with_suffix(""))
        ann = wfdb.rdann(str(path.with_suffix("")), "atr")
        out = np.zeros(x.size, dtype=bool)
        symbol = np.array(ann.symbol)
        for on, off in zip(ann.sample[symbol == "["], ann.sample[symbol == "]"]):
            out[on:off + 1] = True
        ref, peaks = ref[~out[ref]], detect_rpeaks(x, fs)
        c = compare_annotations(ref, peaks[~out[peaks]], int(0.150 * fs))
        total += (c.tp, c.fp, c.fn)
        score = min(c.tp / (c.tp + c.fn), c.tp / (c.tp + c.fp))
        assert score >= 0.98, (path.stem, c.tp, c.fp, c.fn)
    tp, fp, fn = total
    assert tp / (tp + fn) >= 0.998 and tp / (tp + fp) >= 0.998, (tp, fp, fn)


def test_each_ludb_lead_alone_finds_the_delineated_qrs_and_no_t_wave(real_dir: Path) -> None:
    """LUDB 1 (sinus bradycardia, LVH): V2's T waves are a third of its QRS and come 0.37 s
    after it, past a fixed 0.36 s T-wave window; the cardiologist's QRS peaks ('N' in each
    lead's file) are the reference, inside the span they cover."""
    import wfdb
    from wfdb.processing import compare_annotations

    rec = wfdb.rdrecord(str(real_dir / "ludb/1"))
    for i, lead in enumerate(rec.sig_name):
        ann = wfdb.rdann(str(real_dir / "ludb/1"), lead)
        ref = ann.sample[np.array(ann.symbol) == "N"]
        peaks = detect_rpeaks(rec.p_signal[:, i], rec.fs)
        span = peaks[(peaks > ann.sample.min()) & (peaks < ann.sample.max())]
        c = compare_annotations(ref, span, int(0.150 * rec.fs))
        assert (c.tp, c.fp, c.fn) == (ref.size, 0, 0), lead


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


def test_heart_rate_needs_two_beats() -> None:
    assert np.isnan(heart_rate_bpm(np.array([10]), 250.0))
    assert np.isnan(heart_rate_bpm(np.zeros(0, dtype=np.int64), 250.0))
    assert np.isnan(heart_rate_bpm(np.array([0, 250]), 0.0))
    assert heart_rate_bpm(np.array([0, 125, 250, 400]), 250.0) == pytest.approx(112.5)


def test_heart_rate_counts_every_beat_and_skips_gaps() -> None:
    """Bigeminy at 0.5 / 1.0 s is 80 bpm (60 / mean RR), not the 60 or 120 of a median; a
    30 s stretch without beats (lead off) is a gap, not one slow beat."""
    fs = 250.0
    bigeminy = np.cumsum([0] + [125, 250] * 10)
    assert heart_rate_bpm(bigeminy, fs) == pytest.approx(80.0)
    gap = np.concatenate([bigeminy, bigeminy[-1] + 30 * 250 + bigeminy])
    assert heart_rate_bpm(gap, fs) == pytest.approx(80.0)
    assert heart_rate_bpm(gap[::-1], fs) == pytest.approx(80.0)  # order does not matter


@pytest.mark.parametrize("fs", RATES)
def test_bigeminy_pvcs_are_beats(fs: int) -> None:
    """PVCs as tall as the sinus beats but a third as steep (MIT-BIH 208): the squared-slope
    feature made them a ninth of a beat and missed every one, halving the heart rate."""
    shapes = [None if k % 2 == 0 else PVC_LOW for k in range(41)]
    x, truth = beat_train(fs, shapes, [0.5 if k % 2 == 0 else 1.0 for k in range(40)], seed=fs)
    peaks = detect_rpeaks(x, fs)
    assert score(truth, peaks, int(0.05 * fs)) == (truth.size, 0, 0)
    assert heart_rate_bpm(peaks, fs) == pytest.approx(80.0, abs=0.5)


@pytest.mark.parametrize("fs", RATES)
def test_multiform_pvcs(fs: int) -> None:
    """Every third beat early and from one of two foci, of either polarity (MIT-BIH 203)."""
    shapes = [None if k % 3 else (PVC_LOW if k % 6 == 0 else PVC_UP) for k in range(1, 44)] + [None]
    rr = [0.45 if k % 3 == 1 else 0.8 for k in range(43)]
    x, truth = beat_train(fs, shapes, rr, seed=fs + 1)
    assert score(truth, detect_rpeaks(x, fs), int(0.05 * fs)) == (truth.size, 0, 0)


@pytest.mark.parametrize("fs", RATES)
def test_af_with_aberrant_beats(fs: int) -> None:
    """Irregular RR 0.45-1.1 s, no P waves, a sixth of the beats small and wide (MIT-BIH 201)."""
    rng = np.random.default_rng(fs)
    shapes = [None] + [ABERRANT if rng.random() < 1 / 6 else None for _ in range(59)] + [None]
    x, truth = beat_train(fs, shapes, list(rng.uniform(0.45, 1.1, 60)), seed=fs + 2, p_amp=0.0)
    assert score(truth, detect_rpeaks(x, fs), int(0.05 * fs)) == (truth.size, 0, 0)


@pytest.mark.parametrize("fs", RATES)
def test_tall_p_waves_of_a_long_pr_are_not_beats(fs: int) -> None:
    """P waves 0.6 of the R wave, 0.24 s before it (first-degree block, MIT-BIH 108)."""
    x, truth = beat_train(fs, [None] * 30, [0.9] * 29, seed=fs + 3, p_amp=0.6, pr_s=0.24)
    assert score(truth, detect_rpeaks(x, fs), int(0.05 * fs)) == (truth.size, 0, 0)


@pytest.mark.parametrize("fs", RATES)
def test_noise_bursts_cost_only_the_beats_inside_them(fs: int) -> None:
    """1 s bursts of broadband noise (0.3 mV rms, a third of the R wave) every 6 s."""
    x, truth = beat_train(fs, [None] * 60, [0.8] * 59, seed=fs + 4)
    rng = np.random.default_rng(1)
    starts = np.arange(2 * fs, x.size - 2 * fs, 6 * fs)
    inside = np.zeros(x.size, dtype=bool)
    for s0 in starts:
        x[s0:s0 + fs] += 0.3 * rng.standard_normal(fs)
        inside[s0 - fs // 10:s0 + fs + fs // 10] = True
    peaks = detect_rpeaks(x, fs)
    tp, fp, fn = score(truth[~inside[truth]], peaks[~inside[peaks]], int(0.05 * fs))
    assert (fp, fn) == (0, 0)
    assert score(truth, peaks, int(0.05 * fs))[1] <= starts.size  # at most one per burst


def test_numpy_helpers_equal_the_scipy_functions_they_replace() -> None:
    """The detector's peak picking and running filters are NumPy re-writes (SciPy's signal and
    ndimage cost 0.85 s to import per run); they must give SciPy's exact answers."""
    from scipy.ndimage import median_filter, uniform_filter1d
    from scipy.signal import find_peaks

    from ecgmoe_cli.signal.arrays import find_peaks as _peaks
    from ecgmoe_cli.signal.arrays import median as _median
    from ecgmoe_cli.signal.arrays import moving_mean as _moving_mean
    from ecgmoe_cli.signal.arrays import running_median as _running_median

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


def test_irregular_intervals_mark_af_not_a_lone_ectopic_pair() -> None:
    """A median over the 8 successive differences around each interval: AF's scattered
    intervals are irregular, a premature-compensatory pair in sinus rhythm is not."""
    rng = np.random.default_rng(0)
    sinus, af = np.full(20, 0.8), rng.uniform(0.35, 0.9, 30)
    marks = irregular_intervals(np.r_[sinus, af, sinus])
    assert not marks[:18].any() and marks[23:47].all() and not marks[53:].any()
    ectopic = np.r_[np.full(10, 0.8), 0.5, 1.1, np.full(10, 0.8)]
    assert not irregular_intervals(ectopic).any()
    assert irregular_intervals(np.array([0.8])).tolist() == [False]
    assert irregular_intervals(np.full(5, 0.8) * 1000).sum() == 0  # any unit
