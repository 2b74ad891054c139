"""Signal hygiene: NaN repair, flat/saturated lead detection, resampling and band-pass.

Everything works on (leads, n) arrays at once (no Python loop over samples), because
preprocessing runs at hundreds of records per second. Resampling and the zero-phase band-pass
are one FFT round trip: the band-pass weights are the exact |H|^2 of the Butterworth filter
that scipy.signal.sosfiltfilt would apply twice in the time domain, and bins above the new
Nyquist rate are dropped (no aliasing); this is three times cheaper than a polyphase FIR plus
sosfiltfilt, and keeps scipy.signal (0.6 s to import) out of preprocessing.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from scipy import fft  # float32 transforms, vectorised over leads (numpy's loop per row)

from ecgmoe_cli.signal.spec import PreprocessSpec

_PAD_S = 0.5  # odd-extension padding of the band-pass: SciPy's 15 samples leave a 0.5 Hz
#               high-pass ringing through the first and last second of a 10 s record


def nan_repair(x: np.ndarray, fs: float, max_run_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Linearly interpolate every NaN run; also return where the runs were too long to trust.

    Long runs are filled too (a step would ring through the band-pass) but reported in the
    (leads, n) `long_gap` mask so the caller zeroes and masks them instead of using them.
    """
    bad = ~np.isfinite(x)
    long_gap = np.zeros(x.shape, dtype=bool)
    if not bad.any():
        return x, long_gap
    out = np.array(x, dtype=np.float32, copy=True)
    max_run = max(round(max_run_s * fs), 0)
    idx = np.arange(x.shape[1])
    for lead in np.flatnonzero(bad.any(axis=1)):
        b = bad[lead]
        good = np.flatnonzero(~b)
        if good.size == 0:
            out[lead] = 0.0
            long_gap[lead] = True
            continue
        out[lead, b] = np.interp(idx[b], good, out[lead, good])
        edges = np.diff(np.concatenate([[0], b.view(np.int8), [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        for s, e in zip(starts[ends - starts > max_run], ends[ends - starts > max_run]):
            long_gap[lead, s:e] = True
    return out, long_gap


def stuck_mask(x: np.ndarray) -> np.ndarray:
    """(leads, n) True where a lead sits at its own extreme value (ADC saturation)."""
    if np.isfinite(x.sum()):
        hi, lo = x.max(axis=1, keepdims=True), x.min(axis=1, keepdims=True)
    else:
        hi = np.where(np.isfinite(x), x, -np.inf).max(axis=1, keepdims=True)
        lo = np.where(np.isfinite(x), x, np.inf).min(axis=1, keepdims=True)
    return (x == hi) | (x == lo)


def resample_ratio(fs_in: float, fs_out: float) -> tuple[int, int]:
    """(up, down) integers with up/down ~ fs_out/fs_in (exact for the usual rates)."""
    frac = Fraction(fs_out / fs_in).limit_denominator(1000)
    return max(frac.numerator, 1), max(frac.denominator, 1)


def butter_gain(f: np.ndarray, fs: float, band: tuple[float, float], order: int) -> np.ndarray:
    """Zero-phase (forward-backward) response |H|^2 of scipy.signal.butter(order, band, fs=fs)
    at frequencies f < fs/2: the bilinear transform maps f to tan(pi f / fs), where the analog
    Butterworth response is 1 / (1 + u^(2 order)). A low-pass when band[0] is 0."""
    lo, hi = band
    t = np.tan(np.pi * np.asarray(f, dtype=np.float64) / fs)
    t_hi = np.tan(np.pi * hi / fs)
    if lo > 0:
        t_lo = np.tan(np.pi * lo / fs)
        with np.errstate(divide="ignore"):
            u = (t * t - t_lo * t_hi) / (t * (t_hi - t_lo))  # -inf at DC: gain 0
    else:
        u = t / t_hi
    return 1.0 / (1.0 + u ** (2 * order))


@lru_cache(maxsize=256)
def _fft_len(n: int, multiple: int) -> int:
    """Smallest multiple of `multiple` >= n whose cofactor has no prime factor above 5."""
    k = max(-(-n // multiple), 1)
    while True:
        r = k
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return k * multiple
        k += 1


def _odd_extend(x: np.ndarray, left: int, right: int) -> np.ndarray:
    """x with `left`/`right` samples of odd extension (as sosfiltfilt pads); where x is shorter
    than a pad, the extension's outermost value is held."""
    n = x.shape[1]
    kl, kr = min(left, n - 1), min(right, n - 1)
    parts = []
    if left:
        head = 2 * x[:, :1] - x[:, kl:0:-1]
        parts.append(np.repeat(head[:, :1] if kl else x[:, :1], left - kl, axis=1))
        parts.append(head)
    parts.append(x)
    if right:
        tail = 2 * x[:, -1:] - x[:, -2:-kr - 2:-1]
        parts.append(tail)
        parts.append(np.repeat(tail[:, -1:] if kr else x[:, -1:], right - kr, axis=1))
    return np.concatenate(parts, axis=1)


class _Plan(NamedTuple):
    left: int  # odd-extension samples before the input
    n_fft: int  # transform length at the input rate (input + extension)
    m_fft: int  # the same span at the output rate
    first: int  # output sample of input sample 0
    n_out: int
    gain: np.ndarray  # (bins,) float32 weight per frequency bin (|H|^2, rescaled)
    ramp_in: np.ndarray  # (n_fft,) 0 -> 1 across the extended input
    ramp_out: np.ndarray  # (n_out,) that ramp at the kept output samples
    dc: float  # the filter's gain at 0 Hz: how much of the removed ramp is put back


def _plan(n: int, fs_in: float, fs_out: float, band: tuple[float, float] | None,
          order: int) -> _Plan:
    up, down = resample_ratio(fs_in, fs_out)
    left = max(-(-round(_PAD_S * fs_in) // down), 1) * down  # output sample 0 = input sample 0
    n_fft = _fft_len(n + 2 * left, down)
    m_fft = n_fft * up // down
    bins = min(n_fft, m_fft) // 2 + 1
    f = np.arange(bins) * (fs_in / n_fft)
    if band is None:  # plain resampling: a steep low-pass under the lower Nyquist rate
        gain = 1.0 / (1.0 + (f / (0.45 * min(fs_in, fs_out))) ** 16)
    else:
        gain = butter_gain(f, fs_out, band, order)
    dc = float(gain[0])
    gain = gain * (m_fft / n_fft)
    if m_fft != n_fft and min(n_fft, m_fft) % 2 == 0:
        gain[-1] *= 0.0 if m_fft < n_fft else 0.5  # the shorter side's Nyquist bin
    first, n_out = left * up // down, -(-n * up // down)
    ramp_out = (first + np.arange(n_out)) * (n_fft / (m_fft * max(n_fft - 1, 1)))
    return _Plan(left, n_fft, m_fft, first, n_out, gain.astype(np.float32),
                 np.linspace(0.0, 1.0, n_fft, dtype=np.float32), ramp_out.astype(np.float32),
                 dc)


_cached_plan = lru_cache(maxsize=16)(_plan)  # records of one corpus share their length
_CACHE_MAX = 1 << 16  # longer inputs (chunks of long records) are planned afresh
_BLOCK = 1 << 22  # samples per FFT batch: bounds the memory of long chunks


def resample_filter(x: np.ndarray, fs_in: float, fs_out: float,
                    band: tuple[float, float] | None = None, order: int = 2) -> np.ndarray:
    """Resample (leads, n) from fs_in to fs_out and apply the zero-phase Butterworth `band`,
    in one FFT round trip: odd extension, the end-to-end ramp removed (so the circular
    transform sees no step), bins weighted by the filter's |H|^2 and cut at the new rate."""
    x = np.asarray(x, dtype=np.float32)
    n = x.shape[1]
    plan = (_cached_plan if n <= _CACHE_MAX else _plan)(n, float(fs_in), float(fs_out), band,
                                                        order)
    out = np.empty((x.shape[0], plan.n_out), np.float32)
    step = max(_BLOCK // plan.n_fft, 1)
    for i in range(0, x.shape[0], step):
        ext = _odd_extend(x[i:i + step], plan.left, plan.n_fft - n - plan.left)
        a, rise = ext[:, :1].copy(), ext[:, -1:] - ext[:, :1]
        ext -= a
        ext -= rise * plan.ramp_in
        spec = fft.rfft(ext, axis=1, overwrite_x=True)[:, : plan.gain.size]
        spec *= plan.gain
        y = fft.irfft(spec, n=plan.m_fft, axis=1, overwrite_x=True)
        y = y[:, plan.first:plan.first + plan.n_out]
        if plan.dc:
            y += plan.dc * (a + rise * plan.ramp_out)
        out[i:i + step] = y
    return out


def _under_nyquist(band: tuple[float, float], fs: float) -> tuple[float, float]:
    """The band with its upper edge kept below 0.45 fs (where the filter is still defined)."""
    return float(band[0]), float(min(band[1], 0.45 * fs))


def bandpass(x: np.ndarray, fs: float, band: tuple[float, float], order: int) -> np.ndarray:
    """Zero-phase Butterworth band-pass (low-pass when band[0] is 0) along the last axis, as
    scipy.signal.sosfiltfilt of butter(order, band) with half a second of odd padding."""
    return resample_filter(np.atleast_2d(x), fs, fs, _under_nyquist(band, fs), order)


def clean(x: np.ndarray, fs_in: float,
          spec: PreprocessSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw (leads, n) mV at fs_in -> filtered (leads, m) at spec.fs, clipped, long gaps zeroed;
    plus two (leads, m) masks at spec.fs: long NaN gaps, and saturated (stuck) samples."""
    filled, long_gap = nan_repair(x, fs_in, spec.nan_interp_max_s)
    stuck = stuck_mask(x)
    y = resample_filter(filled, fs_in, spec.fs, _under_nyquist(spec.bandpass_hz, spec.fs),
                  spec.filter_order)
    np.clip(y, -spec.clip_mv, spec.clip_mv, out=y)
    step = fs_in / spec.fs
    k = int(step)
    if k == step and -(-x.shape[1] // k) == y.shape[1]:  # 500 -> 250 Hz: every k-th sample
        src: slice | np.ndarray = slice(None, None, k)
    else:
        src = np.minimum((np.arange(y.shape[1]) * step).astype(np.int64), x.shape[1] - 1)
    if not long_gap.any():
        return y, np.zeros(y.shape, bool), stuck[:, src]
    gap_out = long_gap[:, src]
    y[gap_out] = 0.0
    return y, gap_out, stuck[:, src]
