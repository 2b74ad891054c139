"""Cardiac period from the R-peaks: RR features per beat, heart rate per record or window."""

from __future__ import annotations

import numpy as np

from ecgmoe_cli.signal.arrays import median

GAP_X = 3.0  # heart rate: an interval over this many median RRs is a gap, not a beat
# AF at beat resolution: an interval is irregular when the median |d log RR| of the 2 x
# IRREGULAR_HALF successive differences around it exceeds IRREGULAR_STEP (sinus rhythm with
# isolated ectopics stays near 0.01-0.02, AF above 0.1; a median ignores a lone ectopic pair)
IRREGULAR_HALF, IRREGULAR_STEP = 4, 0.06


def rr_features(rpeaks: np.ndarray, fs: float) -> np.ndarray:
    """(n_beats, 4) float32 seconds: pre-RR, post-RR, local mean RR (9 beats), pre / local."""
    r = np.asarray(rpeaks, dtype=np.float64).ravel()
    n = r.size
    if n == 0:
        return np.zeros((0, 4), dtype=np.float32)
    if n == 1:
        return np.zeros((1, 4), dtype=np.float32)
    rr = np.diff(r) / fs  # (n-1,)
    pre = np.concatenate([rr[:1], rr])  # the first beat borrows its neighbour's interval
    post = np.concatenate([rr, rr[-1:]])
    k = 9
    pad = np.concatenate([np.full(k // 2, pre[0]), pre, np.full(k // 2, pre[-1])])
    local = np.convolve(pad, np.ones(k) / k, mode="valid")
    ratio = np.divide(pre, local, out=np.zeros_like(pre), where=local > 0)
    return np.stack([pre, post, local, ratio], axis=1).astype(np.float32)


def heart_rate_bpm(rpeaks: np.ndarray, fs: float) -> float:
    """Beats per minute from every detected beat: 60 / mean RR; NaN with fewer than two beats.

    The mean, not the median: in bigeminy or AF the median picks one kind of interval, the
    mean counts every beat (and equals 60000 / the rr_interval targets, means of RR too).
    Intervals over GAP_X median RRs are stretches where no beat could be found (lead off,
    an unusable span between windows), not slow beats, and are left out.
    """
    r = np.sort(np.asarray(rpeaks, dtype=np.float64).ravel())
    if r.size < 2 or not fs > 0:
        return float("nan")
    rr = np.diff(r)
    rr = rr[rr <= GAP_X * median(rr)]
    return float(60.0 * fs / rr.mean())


def irregular_intervals(rr: np.ndarray, half: int = IRREGULAR_HALF,
                        step: float = IRREGULAR_STEP) -> np.ndarray:
    """(n,) bool per RR interval (any unit, > 0): the median |d log RR| of the successive
    differences j = i - half .. i + half - 1 around interval i (those that exist) over `step`."""
    rr = np.asarray(rr, np.float64)
    if rr.size < 2:
        return np.zeros(rr.size, bool)
    d = np.abs(np.diff(np.log(rr)))
    padded = np.concatenate([np.full(half, np.nan), d, np.full(half, np.nan)])
    around = np.lib.stride_tricks.sliding_window_view(padded, 2 * half)[:rr.size]
    return np.nanmedian(around, axis=1) > step
