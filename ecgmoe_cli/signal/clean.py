"""Signal hygiene: NaN repair, flat/saturated lead detection, resampling and band-pass.

Everything works on (leads, n) arrays at once (no Python loop over samples), because
preprocessing runs at hundreds of records per second.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import numpy as np
from scipy.signal import butter, firwin, sosfilt, sosfilt_zi, upfirdn

from ecgmoe_cli.signal.spec import PreprocessSpec

_PAD_S = 0.5  # odd-extension padding of the band-pass: SciPy's 15 samples leave a 0.5 Hz
#               high-pass ringing through the first and last second of a 10 s record
_FIR_HALF_LEN = 5  # anti-aliasing FIR half length, in periods of the faster rate


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


@lru_cache(maxsize=32)
def _antialias(up: int, down: int) -> np.ndarray:
    """Kaiser-windowed sinc low-pass at the lower Nyquist rate, half as long as SciPy's default.

    The band-pass that follows keeps only <= 45 Hz, so a wider transition band is harmless
    and halves the cost of the polyphase filter.
    """
    rate = max(up, down)
    return firwin(2 * _FIR_HALF_LEN * rate + 1, 1.0 / rate, window=("kaiser", 5.0))


@lru_cache(maxsize=64)
def _polyphase(up: int, down: int, n_in: int) -> tuple[np.ndarray, int, int]:
    """(float32 FIR, first kept output, output length) so that upfirdn reproduces
    scipy.signal.resample_poly(x, up, down, window=_antialias(up, down)) for n_in samples.

    resample_poly re-derives the padded filter on every call, which costs as much as
    filtering a 10 s record; records of one corpus share their length, so this is cached.
    """
    h = _antialias(up, down) * up
    half = (h.size - 1) // 2
    pre = down - half % down
    first = (half + pre) // down
    n_out = -(-n_in * up // down)
    post = 0  # upfirdn gives ((n_in - 1) * up + len(h)) // down + 1 outputs
    while ((n_in - 1) * up + h.size + pre + post) // down + 1 < n_out + first:
        post += 1
    h = np.concatenate([np.zeros(pre), h, np.zeros(post)]).astype(np.float32)
    return h, first, n_out


def resample(x: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Polyphase resampling with an anti-aliasing FIR (as scipy.signal.resample_poly), float32."""
    up, down = resample_ratio(fs_in, fs_out)
    x = np.asarray(x, dtype=np.float32)
    if up == down:
        return x
    h, first, n_out = _polyphase(up, down, x.shape[-1])
    y = upfirdn(h, x, up, down, axis=-1)
    return y[..., first:first + n_out]


@lru_cache(maxsize=32)
def _sos(fs: float, lo: float, hi: float, order: int) -> np.ndarray:
    if lo > 0:
        return butter(order, [lo, hi], btype="band", fs=fs, output="sos")
    return butter(order, hi, btype="low", fs=fs, output="sos")


_ZI: dict[bytes, np.ndarray] = {}


def zero_phase(sos: np.ndarray, x: np.ndarray, padlen: int) -> np.ndarray:
    """scipy.signal.sosfiltfilt(sos, x, axis=-1, padlen=padlen) for 2-D x, with the filter's
    initial state cached (SciPy solves for it on every call, which costs more than filtering
    a 10 s record)."""
    key = sos.tobytes()
    zi = _ZI.get(key)
    if zi is None:
        zi = _ZI.setdefault(key, sosfilt_zi(sos))
    padlen = min(padlen, x.shape[-1] - 1)
    if padlen > 0:  # odd extension, as sosfiltfilt's default padtype
        ext = np.concatenate([2 * x[:, :1] - x[:, padlen:0:-1], x,
                              2 * x[:, -1:] - x[:, -2:-padlen - 2:-1]], axis=1)
    else:
        ext = x
    z0 = zi[:, None, :] * ext[None, :, :1]  # (sections, leads, 2)
    y, _ = sosfilt(sos, ext, axis=-1, zi=z0)
    y = y[:, ::-1]
    y, _ = sosfilt(sos, y, axis=-1, zi=zi[:, None, :] * y[None, :, :1])
    y = y[:, ::-1]
    return y[:, padlen: y.shape[1] - padlen] if padlen > 0 else y


def bandpass(x: np.ndarray, fs: float, band: tuple[float, float], order: int) -> np.ndarray:
    """Zero-phase Butterworth band-pass (low-pass when band[0] is 0) along the last axis."""
    lo, hi = band
    hi = min(hi, 0.45 * fs)
    sos = _sos(float(fs), float(lo), float(hi), int(order))
    n = x.shape[-1]
    if n < 4:
        return (x - x.mean(axis=-1, keepdims=True)).astype(np.float32)
    return zero_phase(sos, np.atleast_2d(x), int(_PAD_S * fs)).astype(np.float32, copy=False)


def clean(x: np.ndarray, fs_in: float,
          spec: PreprocessSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw (leads, n) mV at fs_in -> filtered (leads, m) at spec.fs, clipped, long gaps zeroed;
    plus two (leads, m) masks at spec.fs: long NaN gaps, and saturated (stuck) samples."""
    filled, long_gap = nan_repair(x, fs_in, spec.nan_interp_max_s)
    stuck = stuck_mask(x)
    y = resample(filled, fs_in, spec.fs)
    y = bandpass(y, spec.fs, spec.bandpass_hz, spec.filter_order)
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
