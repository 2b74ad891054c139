"""R-peak detection: where each beat is.

The detector is a Pan-Tompkins / Hamilton-Tompkins pipeline made fs-independent and multi-lead:

    raw (L, n) ─▶ fill NaN ─▶ box-average to ~125-250 Hz ─▶ band-pass 5-20 Hz ─▶ derivative²
      ─▶ 150 ms moving mean ─▶ √ (RMS slope) ─▶ / typical beat height per lead ─▶ combine leads
      ─▶ candidate maxima ─▶ median-of-8 thresholds, P- and T-wave checks, searchback
      ─▶ drop small beats the rhythm does without ─▶ R-peak = dominant extremum of the QRS

The feature is the RMS slope, linear in amplitude: a PVC as tall as the sinus beats but three
times as wide reads 0.58 of them (slope² read 0.33, and missed them); a T wave of half the
R wave and five times its width reads 0.2 (mean |slope| read 0.45, and took tall T waves).
Only the candidate loop runs in Python; every per-sample step is NumPy (the band-pass an FFT).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from ecgmoe_cli.signal.arrays import find_peaks, median, moving_mean, running_median
from ecgmoe_cli.signal.clean import bandpass

_EMPTY = np.zeros(0, dtype=np.int64)
_DETECT_FS = 250.0  # the detection feature runs at fs / ceil(fs / this): 125-250 Hz
_BAND_HZ = (5.0, 20.0)  # where QRS energy dominates P, T, wander and mains
_MWI_S = 0.15  # integration window: about one wide QRS
_REFRACTORY_S = 0.2  # no two beats closer than this (300 bpm)
_PWAVE_S = 0.3  # a steeper peak this soon after a beat, and sooner than half the median RR
# and half the beat's own RR (a P wave sits nearer its QRS than the beat before): a P wave
_TWAVE_S = 0.36  # a peak this soon after a beat must be half as steep as it, or is a T wave
_QT_K, _T_FLAT = 0.45, 0.3  # ... or, up to 0.45 s x sqrt(RR / s) (about the QT, Bazett),
# less than this share of its slope
_LOCATE_S = 0.08  # R-peak search half-window around the QRS energy centre
_MIN_LEN_S = 0.5  # shorter input has no beat to find
_LOCAL_SEGS = 7  # 2 s segments in the running beat-height median (~14 s)
_THR, _NOISE_K = 0.2, 1.5  # beat threshold: this share of the beat level + k x noise level
_GAP_RR = 1.5  # an interval this many median RRs long is searched back for a missed beat
_SEARCHBACK = 0.5  # ... where the largest peak above this fraction of the threshold is one
_SMALL, _GAP = 0.6, 1.3  # a beat under this share of its neighbours' height whose loss leaves
# an interval under this many local RRs is noise between beats


def _fill_nan(x: np.ndarray) -> np.ndarray | None:
    """Linear interpolation over NaN (no steps for the filter to ring on); None if hopeless."""
    bad = ~np.isfinite(x)
    if not bad.any():
        return x
    good = np.flatnonzero(~bad)
    if good.size < 0.1 * x.size:
        return None
    out = x.copy()
    out[bad] = np.interp(np.flatnonzero(bad), good, x[good])
    return out


def _qrs_band(fd: float) -> tuple[float, float]:
    """The QRS band at rate fd; below 44 Hz 5-20 Hz does not fit under Nyquist: it shrinks to
    0.225-0.45 fd."""
    hi = min(_BAND_HZ[1], 0.45 * fd)
    return min(_BAND_HZ[0], hi / 2), hi



def _feature(x: np.ndarray, fd: float) -> tuple[np.ndarray, np.ndarray]:
    """Band-passed derivative and its RMS over the integration window, (L, m) each."""
    bp = bandpass(x, fd, _qrs_band(float(fd)), 2)
    d = np.empty_like(bp)
    d[:, 1:] = np.diff(bp, axis=-1)
    d[:, 0] = d[:, 1] if bp.shape[1] > 1 else 0.0
    return d, np.sqrt(moving_mean(d * d, max(int(_MWI_S * fd), 1)))


def _combine(energy: np.ndarray, slope: np.ndarray, fd: float
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Combine leads into one feature where a typical beat is 1.

    Each lead is divided by its local typical beat (running median of 2 s maxima over ~14 s,
    so a sudden amplitude drop is followed) and weighted, per 2 s segment, by how peaky it
    is there (maximum / median): a lead that turns noisy loses its vote where it is noisy.
    Returns the feature, its slope twin and the weights (L, m) that pick the locating lead.
    """
    n_leads, m = energy.shape
    seg = max(int(2.0 * fd), 1)
    nseg = max(m // seg, 1)
    blocks = energy[:, : nseg * seg].reshape(n_leads, nseg, -1)
    seg_max = blocks.max(axis=2)
    height = np.maximum(median(seg_max, axis=1)[:, None], 1e-30)
    # Follow drops only (a burst of artifact must not shrink the beats around it), down to a
    # floor so that a pause or asystole does not blow its noise up to beat size.
    local = running_median(seg_max, _LOCAL_SEGS)
    local = np.clip(local, height / 40, height)
    centres = (np.arange(nseg) + 0.5) * blocks.shape[2]
    t = np.arange(m)
    scale = np.vstack([np.interp(t, centres, row) for row in local])
    norm = np.minimum(energy / scale, 4.0)  # one artifact may not outvote a beat
    snorm = np.abs(slope) / scale
    if n_leads == 1:
        return norm[0], snorm[0], np.ones((1, m))
    peaky = seg_max / np.maximum(median(blocks, axis=2), 1e-12 * height)
    w = np.vstack([np.interp(t, centres, row) for row in peaky * peaky])
    total = w.sum(axis=0)
    return (w * norm).sum(axis=0) / total, (w * snorm).sum(axis=0) / total, w


def _med(values: deque[float]) -> float:
    """Median of a few values (the decision loop's buffers), without NumPy's overhead."""
    v = sorted(values)
    n = len(v)
    return float(v[n // 2]) if n % 2 else 0.5 * float(v[n // 2 - 1] + v[n // 2])


def _threshold_peaks(feat: np.ndarray, sfeat: np.ndarray, fd: float) -> np.ndarray:
    """Adaptive-threshold decision over candidate maxima (the only Python loop)."""
    refractory = int(_REFRACTORY_S * fd)
    # Zero ends let a beat cut off by the record's edge still count as a maximum.
    padded = np.concatenate([[0.0], feat, [0.0]])
    cand = find_peaks(padded, 0.03, max(refractory, 1))
    hts = padded[cand]
    cand = np.clip(cand - 1, 0, feat.size - 1)
    if cand.size == 0:
        return cand
    half = max(int(_MWI_S * fd / 2), 1)
    near = np.clip(cand[:, None] + np.arange(-half, half + 1)[None, :], 0, feat.size - 1)
    slopes = sfeat[near].max(axis=1)  # the steepest slope around each candidate
    twave_min = _TWAVE_S * fd
    pwave = int(_PWAVE_S * fd)

    # Medians of the last 8 beats, noise peaks and RR (Hamilton & Tompkins 1986): one odd
    # peak, beat or interval moves none of them.
    spk, npk, rrs = deque([1.0], 8), deque([0.1], 8), deque([fd], 8)  # 60 bpm until learned
    thr = gap = twave = rr_med = 0.0  # beat threshold, searchback interval, T-wave span, RR

    def update() -> None:
        nonlocal thr, gap, twave, rr_med
        rr_med = _med(rrs)
        thr, gap = _THR * _med(spk) + _NOISE_K * _med(npk), _GAP_RR * rr_med
        twave = max(twave_min, _QT_K * math.sqrt(rr_med * fd))  # T waves come later at slow rates

    def t_wave(p: int, slope: float) -> bool:
        """Less than half as steep as the last beat within 0.36 s of it, or less than a third
        as steep within its QT."""
        return (slope < 0.5 * beat_slope and p - last < twave_min
                or slope < _T_FLAT * beat_slope and p - last < twave)

    def noise_peak(i: int) -> None:
        npk.append(hts[i])
        pending.append(i)
        update()

    def accept(i: int) -> None:
        nonlocal last, beat_slope, beat_ht
        p = pos[i]
        if beats:
            rrs.append(p - last)
        spk.append(hts[i])
        beat_slope, beat_ht = slopes[i], hts[i]
        beats.append(p)
        last = p
        pending[:] = [k for k in pending if k > i]  # a searchback keeps the later ones
        update()

    pos, hts, slopes = cand.tolist(), hts.tolist(), slopes.tolist()  # scalar access, fast
    beats: list[int] = []
    beat_slope = beat_ht = 0.0
    last = -10 * int(fd)
    pending: list[int] = []  # candidate indices seen since the last beat (for searchback)
    update()
    for i, (p, h) in enumerate(zip(pos, hts)):
        # Searchback: a gap much longer than usual hides a missed beat below threshold.
        while beats and p - last > gap and pending:
            ok = [j for j in pending if pos[j] - last >= refractory and p - pos[j] >= refractory
                  and not t_wave(pos[j], slopes[j])]
            if not ok:
                break
            j = max(ok, key=lambda k: hts[k])
            if hts[j] < _SEARCHBACK * thr:
                break
            accept(j)
        if p - last < refractory:
            continue
        if h <= thr:
            noise_peak(i)
        elif (beats and p - last < min(pwave, 0.4 * rr_med) and slopes[i] > beat_slope
                and (len(beats) < 2 or p - last < 0.5 * (last - beats[-2]))):
            beats[-1], last, beat_slope, beat_ht = p, p, slopes[i], h  # that was a P wave
            spk[-1] = h
            update()
        elif beats and t_wave(p, slopes[i]):
            noise_peak(i)  # a T wave: as tall, but not as steep
        else:
            accept(i)
    return _off_rhythm(np.asarray(beats, dtype=np.int64), feat)


def _local_median(v: np.ndarray, k: int = 4) -> np.ndarray:
    """Median of each value and its k neighbours either side, mirrored at the ends (repeating
    an odd last value would make it its own neighbourhood)."""
    k = min(k, v.size - 1)
    return running_median(np.pad(v, k, mode="reflect")[None, :], 2 * k + 1)[0, k:v.size + k]


def _off_rhythm(beats: np.ndarray, feat: np.ndarray) -> np.ndarray:
    """Drop small beats that the rhythm does not need: much lower than the beats around them
    and, once gone, leaving an interval no longer than the local RR (noise between beats)."""
    if beats.size < 5:
        return beats
    h = feat[beats]
    med_h, med_rr = _local_median(h), _local_median(np.diff(beats).astype(np.float64))
    gap = np.empty(beats.size)
    gap[1:-1] = beats[2:] - beats[:-2]
    # At the ends the record's edge stands in for the missing neighbour: a small peak there
    # (the P wave of a beat cut off by the end) is dropped by the same rule.
    gap[0], gap[-1] = beats[1], feat.size - beats[-2]
    local_rr = np.concatenate([med_rr[:1], np.minimum(med_rr[:-1], med_rr[1:]), med_rr[-1:]])
    drop = (h < _SMALL * med_h) & (gap < _GAP * local_rr)
    return beats[~drop]


def _locate(x: np.ndarray, lead: np.ndarray, centres: np.ndarray, fs: float) -> np.ndarray:
    """Move each QRS centre to the R-peak: the dominant extremum of its lead around it."""
    n = x.shape[1]
    w = max(int(_LOCATE_S * fs), 1)
    idx = np.clip(centres[:, None] + np.arange(-w, w + 1)[None, :], 0, n - 1)
    # The baseline is the median over twice the span (sparsely): a wide PVC fills the
    # search window itself and would otherwise pull its own baseline down.
    sparse = np.arange(-2 * w, 2 * w + 1, max(w // 8, 1))
    wide = np.clip(centres[:, None] + sparse[None, :], 0, n - 1)
    seg = x[lead[:, None], idx] - median(x[lead[:, None], wide], axis=1)[:, None]
    pos, neg = seg.max(axis=1), -seg.min(axis=1)
    # The lead's usual polarity wins unless this beat is clearly the other way (a PVC).
    positive = median(pos - neg) >= 0
    use_pos = pos >= 0.7 * neg if positive else pos > 1.4 * neg
    off = np.where(use_pos, seg.argmax(axis=1), seg.argmin(axis=1))
    return idx[np.arange(idx.shape[0]), off]


def detect_rpeaks(signal: np.ndarray, fs: float) -> np.ndarray:
    """Sorted int64 R-peak sample indices of a raw (leads, n) or (n,) signal in mV.

    NaN is treated as missing and flat leads are ignored; an input without beats, an empty
    one or a rate that is not a finite positive number gives an empty array, never an exception.
    """
    x = np.asarray(signal, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    fs = float(fs)
    if (x.ndim != 2 or x.size == 0 or not np.isfinite(fs) or fs <= 0
            or x.shape[1] < _MIN_LEN_S * fs):
        return _EMPTY
    leads = []
    for row in x:
        row = _fill_nan(row)
        if row is not None and np.ptp(row) > 1e-6:
            leads.append(row)
    if not leads:
        return _EMPTY
    raw = np.vstack(leads)
    q = max(int(np.ceil(fs / _DETECT_FS - 0.01)), 1)
    fd = fs / q
    m = raw.shape[1] // q
    small = raw[:, : m * q].reshape(raw.shape[0], m, q).mean(axis=2) if q > 1 else raw
    if m < 3 * int(_MWI_S * fd) + 16:
        return _EMPTY
    slope, energy = _feature(small, fd)
    feat, sfeat, weight = _combine(energy, slope, fd)
    centres = _threshold_peaks(feat, sfeat, fd)
    if centres.size == 0:
        return _EMPTY
    best = np.argmax(weight[:, centres], axis=0)  # the cleanest lead at each beat
    peaks = _locate(raw, best, centres * q + q // 2, fs)
    order = np.argsort(peaks, kind="stable")
    peaks, height = peaks[order], feat[centres[order]]
    # Two centres may settle on extrema closer than a refractory period (a wide PVC and its
    # T wave): of such a pair the one with the smaller QRS feature goes.
    close = np.flatnonzero(np.diff(peaks) < _REFRACTORY_S * fs)
    keep = np.ones(peaks.size, dtype=bool)
    keep[np.where(height[close] < height[close + 1], close, close + 1)] = False
    return peaks[keep].astype(np.int64)
