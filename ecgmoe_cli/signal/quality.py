"""Signal-quality index (SQI) per 10 s window, in [0, 1], from what the signal shows.

    quality = usable leads x sqrt(agreement x template)        (0: noise, 1: clean)

- usable leads: the share of the record's ECG leads not masked in the window (flat, saturated,
  NaN) and not clipped: a lead with some samples stuck at its extreme counts for less;
- agreement: F1 of the project's detector (beats.py) against a cheap second one (a slope
  threshold on one lead), on the best of the leads the detector read: on an ECG both find the
  same beats, on noise they pick their own (one clean lead of a Holter is enough; a noisy
  second lead or an artefact spike that made it look the spikiest lead read half of MIT-BIH
  101's windows as low quality);
- template: how much each beat looks like the window's other beats (leave-one-out mean beat,
  correlation per beat and lead, median over leads): noise and artefact do not repeat.
Both scores are mapped linearly onto [0, 1] between 0.5 and 0.95 (`_AGREE`, `_TEMPLATE`):
Gaussian noise scores 0.3 (agreement) and 0.0-0.2 (template), a clean ECG over 0.95. A window
with fewer than `MIN_BEATS` whole beats, or a rate outside 24-240 bpm, scores 0. A record's
quality is the mean over its windows, weighted by their real length.
The threshold `LOW_QUALITY` and the ramps were chosen on half of CinC 2017 (its `~` records,
too noisy to read, against the rest; `benchmarks/quality_check.py`, README).
"""

from __future__ import annotations

import numpy as np

from ecgmoe_cli.signal.arrays import median

LOW_QUALITY = 0.5  # windows and records under this are flagged `low_quality`
MIN_BEATS = 3  # whole beats a window needs for a template
_AGREE = (0.5, 0.95)  # detector F1: chance level on noise -> clean ECG
_TEMPLATE = (0.5, 0.95)  # beat-template correlation: noise -> clean ECG
_BEAT_S = (0.2, 0.4)  # beat segment for the template: before and after the R-peak
_TEMPLATE_FS = 125.0  # beats are compared at about this rate (their shape, not their detail)
_MATCH_S = 0.1  # two detectors agree on a beat when their peaks are this close
_CLIPPED = (0.02, 0.2)  # share of a lead's samples stuck at its extreme: harmless -> useless
_RATE_BPM = (24.0, 240.0)  # a detected rate outside this is not a heart's
_ENV_S = 0.08  # second detector: slope envelope window (about one QRS)
_SEG_S = 2.0  # second detector: threshold per 2 s segment (follows amplitude changes)
_LEVEL = 0.4  # second detector: threshold as a share of the local envelope maximum
_REFRACTORY_S = 0.25  # second detector: no two beats closer than this


def slope_beats(x: np.ndarray, fs: float) -> np.ndarray:
    """R-peaks of one filtered lead by a plain rule, independent of beats.detect_rpeaks: the
    slope envelope crossing 40 % of its local maximum, then the largest |x| just after."""
    n = x.size
    seg, k = max(int(_SEG_S * fs), 1), max(int(_ENV_S * fs), 1)
    if n < 2 * seg:
        return np.zeros(0, np.int64)
    c = np.concatenate([[0.0], np.cumsum(np.abs(x[1:] - x[:-1]), dtype=np.float64)])
    env = c[k:] - c[:-k]  # env[i]: slope summed over samples i .. i + k
    nseg = env.size // seg
    seg_max = env[:nseg * seg].reshape(nseg, seg).max(axis=1)
    pad = np.concatenate([seg_max[:1], seg_max[:1], seg_max, seg_max[-1:], seg_max[-1:]])
    local = median(np.stack([pad[i:i + nseg] for i in range(5)]), axis=0)  # over ~10 s
    thr = np.repeat(_LEVEL * local, seg)
    thr = np.concatenate([thr, np.full(env.size - thr.size, thr[-1])])
    above = env > thr
    rises = np.flatnonzero(above[1:] & ~above[:-1]) + 1
    rises = rises[np.diff(rises, prepend=-n) > _REFRACTORY_S * fs]
    idx = np.minimum(rises[:, None] + np.arange(k + int(0.1 * fs))[None, :], n - 1)
    return idx[np.arange(idx.shape[0]), np.abs(x[idx]).argmax(axis=1)].astype(np.int64)


def _ramp(x: np.ndarray, span: tuple[float, float]) -> np.ndarray:
    return np.minimum(np.maximum((x - span[0]) / (span[1] - span[0]), 0.0), 1.0)


def _per_window(values: np.ndarray, pos: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Sum of `values` at sorted positions `pos` within [lo, hi) of each window."""
    cs = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
    return cs[np.searchsorted(pos, hi)] - cs[np.searchsorted(pos, lo)]


def agreement(peaks: np.ndarray, other: np.ndarray, lo: np.ndarray, hi: np.ndarray,
              fs: float) -> np.ndarray:
    """(nw,) F1 of two sorted beat lists in the windows [lo, hi); 0 where either is empty."""
    if peaks.size == 0 or other.size == 0:
        return np.zeros(lo.size)
    o = np.concatenate([[-np.inf], other, [np.inf]])
    j = np.searchsorted(o, peaks)
    near = np.minimum(o[j] - peaks, peaks - o[j - 1])  # to the nearest of `other`
    matched = _per_window((near <= _MATCH_S * fs).astype(np.float64), peaks, lo, hi)
    total = _per_window(np.ones(peaks.size), peaks, lo, hi) + \
        _per_window(np.ones(other.size), other, lo, hi)
    return np.divide(2 * matched, total, out=np.zeros(lo.size), where=total > 0)


def template_correlation(y: np.ndarray, peaks: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                         fs: float) -> tuple[np.ndarray, np.ndarray]:
    """(L, nw) mean correlation of each whole beat with the mean of the window's other beats,
    per lead, and (nw,) how many whole beats each window holds (under MIN_BEATS: 0).

    Beats are scaled to unit norm first, so one tall artefact cannot make the template; with
    unit beats b and their window's sum t, the leave-one-out correlation is
    (b.t - 1) / |t - b|, and |t - b|^2 = |t|^2 - 2 b.t + 1: no template per beat is built.
    """
    pre, post = int(_BEAT_S[0] * fs), int(_BEAT_S[1] * fs)
    a = np.searchsorted(peaks, lo + pre)
    b = np.searchsorted(peaks, hi - post)
    count = np.maximum(b - a, 0)
    count[count < MIN_BEATS] = 0
    corr = np.zeros((y.shape[0], lo.size))
    if not count.any():
        return corr, count
    full = np.flatnonzero(count)
    n = count[full]
    first = np.concatenate([[0], np.cumsum(n)[:-1]])  # each window's first beat in `beat`
    beat = np.repeat(a[full] - first, n) + np.arange(n.sum())  # beats, window by window
    step = max(int(fs / _TEMPLATE_FS), 1)  # the beat's shape, at about 125 Hz
    offsets = np.arange(-pre, post, step)
    seg = y[:, peaks[beat][:, None] + offsets[None, :]]  # (L, beats, width)
    seg -= (seg @ np.full(offsets.size, 1.0 / offsets.size, seg.dtype))[:, :, None]
    norm = np.sqrt(np.einsum("lbw,lbw->lb", seg, seg))
    seg /= np.maximum(norm, 1e-12)[:, :, None]  # a flat beat stays zero
    unit = (norm > 0).astype(np.float64)
    total = np.add.reduceat(seg, first, axis=1) if full.size > 1 else seg.sum(1, keepdims=True)
    win = np.repeat(np.arange(full.size), n)
    dot = np.einsum("lbw,lbw->lb", seg, total[:, win]).astype(np.float64)
    tt = np.einsum("lkw,lkw->lk", total, total).astype(np.float64)[:, win]
    den = np.sqrt(np.maximum(tt - 2 * dot + unit, 0.0))
    c = np.divide(dot - unit, den, out=np.zeros_like(dot), where=den > 1e-6)
    corr[:, full] = np.add.reduceat(c, first, axis=1) / n
    return corr, count


def window_quality(y: np.ndarray, usable: np.ndarray, clipped: np.ndarray, starts: np.ndarray,
                   n_valid: np.ndarray, peaks: np.ndarray, detect: np.ndarray, fs: float
                   ) -> np.ndarray:
    """(nw,) quality in [0, 1] of the windows [starts, starts + n_valid) of y.

    y: (L, m) filtered ECG leads of the record at fs; usable, clipped: (L, nw) leads not masked
    and their share of samples stuck at an extreme; peaks: sorted R-peaks in y's samples (the
    project's detector); detect: the rows of y it read, the spikiest first: the second
    detector reads the next one only while a window's agreement is short of clean.
    """
    lo = starts.astype(np.int64)
    hi = np.minimum(lo + n_valid, y.shape[1])  # a window's real samples, all inside y
    leads = (usable * (1.0 - _ramp(clipped, _CLIPPED))).mean(axis=0)
    corr, count = template_correlation(y, peaks, lo, hi, fs)
    beat_corr = np.where(usable, corr, np.nan)
    has_lead = usable.any(axis=0)
    template = np.zeros(lo.size)
    if has_lead.any():
        template[has_lead] = _median_over_leads(beat_corr[:, has_lead])
    agree = np.zeros(lo.size)
    for row in np.atleast_1d(detect):
        agree = np.maximum(agree, agreement(peaks, slope_beats(y[row], fs), lo, hi, fs))
        if (agree >= _AGREE[1]).all():  # clean on this lead already: the others add nothing
            break
    a = np.searchsorted(peaks, lo)
    b = np.searchsorted(peaks, hi)
    rate = np.zeros(lo.size)
    for i in np.flatnonzero(b - a >= 2):  # median RR per window: a few windows per record
        rate[i] = 60.0 * fs / median(np.diff(peaks[a[i]:b[i]]).astype(np.float64))
    plausible = (count > 0) & (rate >= _RATE_BPM[0]) & (rate <= _RATE_BPM[1])
    q = leads * np.sqrt(_ramp(agree, _AGREE) * _ramp(template, _TEMPLATE)) * plausible
    return np.minimum(q, 1.0)


def _median_over_leads(c: np.ndarray) -> np.ndarray:
    """(L, nw) with NaN for unusable leads -> (nw,) median over the usable ones."""
    if not np.isnan(c).any():
        return median(c, axis=0)
    return np.nanmedian(c, axis=0)


def record_quality(window_q: np.ndarray, n_valid: np.ndarray) -> float:
    """A record's quality: its windows' mean, weighted by their real length."""
    w = np.asarray(n_valid, dtype=np.float64)
    return float(np.average(window_q, weights=w)) if w.sum() > 0 else 0.0
