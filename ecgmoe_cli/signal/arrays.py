"""NumPy stand-ins for the few SciPy routines the signal code needs (SciPy's signal and ndimage
cost 0.85 s to import per run); each gives SciPy's exact answer (tests/test_beats.py)."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def median(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """np.median of finite values along one axis, without its NaN bookkeeping (a third of the
    detector's time went to it on 10 s records)."""
    n = a.shape[axis]
    half = n // 2
    if n % 2:
        return np.partition(a, half, axis=axis).take(half, axis=axis)
    part = np.partition(a, (half - 1, half), axis=axis)
    return (part.take(half - 1, axis=axis) + part.take(half, axis=axis)) / 2


def moving_mean(a: np.ndarray, size: int) -> np.ndarray:
    """Mean over `size` samples centred on each one (the later half longer when size is even)
    along axis 1, edge values repeated: scipy.ndimage.uniform_filter1d(mode="nearest")."""
    left = size // 2
    c = np.zeros((a.shape[0], a.shape[1] + size))
    np.cumsum(np.concatenate([np.repeat(a[:, :1], left, axis=1), a,
                              np.repeat(a[:, -1:], size - 1 - left, axis=1)], axis=1),
              axis=1, out=c[:, 1:])
    return (c[:, size:] - c[:, :-size]) / size


def running_median(a: np.ndarray, size: int) -> np.ndarray:
    """Median over `size` (odd) values centred on each one along axis 1, edge values repeated:
    scipy.ndimage.median_filter(size=(1, size), mode="nearest")."""
    half = size // 2
    padded = np.concatenate([np.repeat(a[:, :1], half, axis=1), a,
                             np.repeat(a[:, -1:], half, axis=1)], axis=1)
    return np.sort(sliding_window_view(padded, size, axis=1), axis=2)[:, :, half]


def find_peaks(x: np.ndarray, height: float, distance: int) -> np.ndarray:
    """Local maxima of x at least `height` tall (a plateau counts once, at its middle), thinned
    so no two are closer than `distance`, the tallest kept first: scipy.signal.find_peaks."""
    change = np.flatnonzero(np.diff(x)) + 1  # where a run of equal values starts
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change - 1, [x.size - 1]])
    v = x[starts]
    top = np.flatnonzero((v[1:-1] > v[:-2]) & (v[1:-1] > v[2:])) + 1  # runs above both sides
    peaks = (starts[top] + ends[top]) // 2
    peaks = peaks[x[peaks] >= height]
    if distance <= 1 or peaks.size < 2 or np.diff(peaks).min() >= distance:
        return peaks
    pos, keep = peaks.tolist(), [True] * peaks.size
    for j in np.argsort(x[peaks])[::-1].tolist():  # tallest first
        if keep[j]:
            k = j - 1
            while k >= 0 and pos[j] - pos[k] < distance:
                keep[k], k = False, k - 1
            k = j + 1
            while k < len(pos) and pos[k] - pos[j] < distance:
                keep[k], k = False, k + 1
    return peaks[np.array(keep)]
