"""Per-beat features for the AAMI beat head: timing and morphology relative to the window's own
dominant beat, so that they mean the same in every patient.

Inter-patient beat classification works when each beat is judged against its own patient
(de Chazal 2004; Llamedo & Martinez 2011): a beat is premature (S) if its RR is short *for
this patient*, ectopic ventricular (V) if its QRS differs from *this patient's* dominant beat.
A bundle-branch block widens every beat, the dominant one too, so a wide beat that looks like
its neighbours stays N. The dominant template is the median of the window's beats that are not
premature (pre-RR at least 0.9 of the window's median), which in bigeminy is the sinus beat.

A 10 s window is too short a reference in runs (an SVTA run makes the whole window premature)
and in windows crowded with ectopy, so `record_context` adds the same two measures against the
record itself: each beat's RR against the median RR of its 150 neighbours on either side
(about 4 min), and its QRS against the dominant template of those neighbours. It is computed
over a whole record, or one `prepare_chunks` block of a long one (30 min), never over a batch
that mixes records. Leave-one-record-out on MIT-BIH DS1 it lifted S from Se 26.5 / PPV 15.4 %
to 42.7 / 31.6 and V from 79.2 / 80.0 to 81.8 / 82.5 (BENCHMARKS.md, *Beat classes*). Inside a
run the beats are on time against each other; `log_onset_step` carries the abrupt RR drop that
opened the run to each of them, which a sinus rate rising beat by beat never has.

No feature is an RR in seconds: a head that sees absolute RRs learns the rates of the training
patients (MIT-BIH 209's SVTA runs near 120 bpm made every beat of a regular 120 bpm sinus
tachycardia S).

The same functions serve training (training/beat_class.py) and `predict --beats`
(inference.py), on the model's windows: what the head learns from is what it is given.
"""

from __future__ import annotations

import warnings

import numpy as np

# QRS span around the R-peak, and the wider span that takes in the T wave (a PVC's T is large
# and opposite to its QRS)
_QRS_S = (-0.10, 0.12)
_WIDE_S = (-0.20, 0.40)
_P_S = (-0.25, -0.07)  # the P wave's span before the R-peak
_PREMATURE = 0.9  # a beat with pre-RR under this fraction of the window median is left out
_MIN_DOMINANT = 3  # with fewer dominant beats the template is the median of all beats
_EPS = 1e-6

_CONTEXT_BEATS = 150  # neighbours on each side that make a beat's record context
_CONTEXT_BLOCK = 50  # beats that share one context template (medians are costly)
_LOCAL_BEATS = 21  # the record-context local mean RR (de Chazal's ~10 beats each side)
_LATE = 1.6  # a dominant beat's post-RR is under this many context RRs (not before a pause)

WINDOW_FEATURES = ("log_pre_local", "log_post_local", "log_pre_post", "log_pre_median",
                 "log_post_median", "log_local_median", "rr_irregularity", "rr_spread",
                 "corr_qrs", "corr_wide", "corr_p", "log_diff_qrs", "log_diff_wide",
                 "log_amplitude", "qrs_width_s", "log_width", "log_slope")
CONTEXT_FEATURES = ("log_pre_context", "log_post_context", "log_local_context",
                    "log_pre_local_context", "corr_qrs_context", "corr_wide_context",
                    "log_diff_context", "log_amplitude_context", "log_onset_step")
BEAT_FEATURES = WINDOW_FEATURES + CONTEXT_FEATURES
N_CONTEXT_FEATURES = len(CONTEXT_FEATURES)
N_BEAT_FEATURES = len(BEAT_FEATURES)


def _log_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.clip(np.log(np.maximum(a, 1e-3) / np.maximum(b, 1e-3)), -3.0, 3.0)


def _masked_median(x: np.ndarray, keep: np.ndarray, axis: int) -> np.ndarray:
    """Median of x over `axis` where `keep` (broadcastable) holds; 0 where nothing is kept."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: windows without beats
        m = np.nanmedian(np.where(keep, x, np.nan), axis=axis)
    return np.nan_to_num(m, nan=0.0)


def _used_leads(signal: np.ndarray) -> np.ndarray:
    """(B, L', W) float32 the leads that hold a sample anywhere: masked leads are zero and add
    nothing to any feature, and a 2-lead Holter would otherwise cost twelve leads' work."""
    signal = np.asarray(signal, np.float32)
    used = np.flatnonzero(np.abs(signal).max(axis=(0, 2)) > 0) if signal.size else []
    return signal[:, used] if len(used) < signal.shape[1] else signal


def _gather(signal: np.ndarray, window: np.ndarray, peak: np.ndarray, fs: float,
            span: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(n, L, S) the samples over `span` seconds around n beats (window index, R-peak sample),
    0 off the window, and (n, 1, S) where they lie inside it."""
    offsets = np.arange(int(round(span[0] * fs)), int(round(span[1] * fs)) + 1)
    idx = peak[:, None].astype(np.int64) + offsets  # (n, S)
    inside = ((idx >= 0) & (idx < signal.shape[-1]))[:, None, :]
    seg = signal[window[:, None, None], np.arange(signal.shape[1])[None, :, None],
                 np.clip(idx, 0, signal.shape[-1] - 1)[:, None, :]]
    return np.where(inside, seg, 0.0), inside


def _demeaned(seg: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """`seg` less its mean per lead over the samples inside the window (0 outside)."""
    n_in = np.maximum(inside.sum(-1, keepdims=True), 1)
    return np.where(inside, seg - seg.sum(-1, keepdims=True) / n_in, 0.0)


def _segments(signal: np.ndarray, rpeaks: np.ndarray, fs: float, span: tuple[float, float]
              ) -> np.ndarray:
    """(B, K, L, S) each beat's samples over `span` seconds around its R-peak, less their mean
    per lead (0 off the window and for padded beats)."""
    b, k = rpeaks.shape
    peak = rpeaks.reshape(-1)
    seg, inside = _gather(signal, np.repeat(np.arange(b), k), peak, fs, span)
    inside = inside & (peak >= 0)[:, None, None]
    return _demeaned(seg, inside).reshape(b, k, *seg.shape[1:])


def _cosine(a: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Cosine similarity of (B, K, L, S) beats with their window's (B, 1, L, S) template."""
    num = (a * t).sum((-2, -1))
    den = np.sqrt((a * a).sum((-2, -1)) * (t * t).sum((-2, -1))) + _EPS
    return num / den


def _log_diff(a: np.ndarray, t: np.ndarray) -> np.ndarray:
    """log of the beat's squared difference from the template over the template's energy."""
    return np.log(((a - t) ** 2).sum((-2, -1)) + _EPS) - np.log((t * t).sum((-2, -1)) + _EPS)


def _width_s(seg: np.ndarray, fs: float) -> np.ndarray:
    """(B, K) QRS width: the span holding the central 80 % of the slope energy, all leads."""
    e = (np.diff(seg, axis=-1) ** 2).sum(-2)  # (B, K, S-1)
    c = np.cumsum(e, -1)
    total = c[..., -1:] + _EPS
    lo = (c < 0.1 * total).sum(-1)
    hi = (c < 0.9 * total).sum(-1)
    return (hi - lo + 1) / fs


def _irregularity(pre: np.ndarray, known: np.ndarray, med: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(B, 1) twice: the window's median |log| change between successive RRs, and its RR
    interquartile range over the median. In AF every beat looks premature; a lone S beat
    in sinus rhythm moves neither (medians and quartiles ignore one or two outliers)."""
    both = known[:, 1:] & known[:, :-1]
    step = np.abs(_log_ratio(pre[:, 1:], pre[:, :-1]))
    irregular = _masked_median(step, both, axis=1)[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        q = np.nanpercentile(np.where(known, pre, np.nan), [25, 75], axis=1)
    spread = np.nan_to_num((q[1] - q[0]), nan=0.0)[:, None] / np.maximum(med, 1e-3)
    return irregular, spread


def _rolling_median(x: np.ndarray, half: int) -> np.ndarray:
    """Median of x over [i - half, i + half] (clipped at the ends) for every i."""
    n = x.size
    if n == 0:
        return x
    if n <= 2 * half + 1:
        return np.full(n, np.median(x))
    view = np.lib.stride_tricks.sliding_window_view(x, 2 * half + 1)
    mid = np.median(view, axis=1)
    head = [np.median(x[:i + half + 1]) for i in range(half)]
    tail = [np.median(x[i - half:]) for i in range(n - half, n)]
    return np.concatenate([head, mid, tail])


def record_context(signal: np.ndarray, rpeaks: np.ndarray, rr: np.ndarray,
                   window_start_s: np.ndarray, fs: float, record: np.ndarray | None = None
                   ) -> np.ndarray:
    """(B, K, N_CONTEXT_FEATURES) float32: each beat against its record's neighbouring beats.

    The arguments are windows as `beat_features` takes them, with each window's start
    (seconds) and `record` (B,) a number per window: windows with the same number are one
    record (or one long-record block); without it, all are one. Rows of padded beats are 0.
    Records of one block of beats are done together (a batch of short records costs about one).
    """
    signal = _used_leads(signal)
    rpeaks = np.asarray(rpeaks)
    rr = np.asarray(rr, np.float32)
    out = np.zeros((*rpeaks.shape, N_CONTEXT_FEATURES), np.float32)
    wi, ki = np.nonzero(rpeaks >= 0)
    if wi.size == 0:
        return out
    group = np.zeros(len(rpeaks), np.int64) if record is None else np.asarray(record)
    order = np.lexsort((np.asarray(window_start_s, np.float64)[wi] + rpeaks[wi, ki] / fs,
                        group[wi]))
    wi, ki = wi[order], ki[order]
    _, first, size = np.unique(group[wi], return_index=True, return_counts=True)
    beats = _Beats(first, size)
    pre, post = rr[wi, ki, 0].astype(np.float64), rr[wi, ki, 1].astype(np.float64)
    known = pre > 0
    fill = beats.spread(beats.median(pre, known, fallback=1.0))
    pre, post = np.where(known, pre, fill), np.where(post > 0, post, fill)
    ctx = beats.rolling_median(pre)
    local = pre[beats.neighbours(_LOCAL_BEATS // 2)].mean(-1)
    raw, inside = _gather(signal, wi, rpeaks[wi, ki], fs, _WIDE_S)  # (n, L, S) in time order
    cut = slice(int(round((_QRS_S[0] - _WIDE_S[0]) * fs)),
                int(round((_QRS_S[1] - _WIDE_S[0]) * fs)) + 1)
    qrs, wide = _demeaned(raw[..., cut], inside[..., cut]), _demeaned(raw, inside)
    t_raw = beats.templates(raw, (pre >= _PREMATURE * ctx) & (post <= _LATE * ctx))
    full = np.ones_like(inside)  # the template is whole even where a beat is cut off
    t_qrs, t_wide = _demeaned(t_raw[..., cut], full[..., cut]), _demeaned(t_raw, full)
    amp, t_amp = np.ptp(qrs, -1).sum(-1), np.ptp(t_qrs, -1).sum(-1)
    feats = [_log_ratio(pre, ctx), _log_ratio(post, ctx), _log_ratio(local, ctx),
             _log_ratio(pre, local), _cosine(qrs, t_qrs), _cosine(wide, t_wide),
             _log_diff(qrs, t_qrs), _log_ratio(amp, t_amp), beats.onset_step(pre, ctx)]
    out[wi, ki] = np.stack(feats, -1)
    return out


def _median_over_beats(seg: np.ndarray, take: np.ndarray) -> np.ndarray:
    """(R, L, S) the median of (R, m, L, S) segments over the beats where `take` (R, m) holds
    (at least one per row): a sort along contiguous beat lanes, several times quicker than
    nanmedian's masked arrays."""
    lanes = np.sort(np.where(take[:, :, None, None], seg, np.inf).transpose(0, 2, 3, 1), -1)
    c = take.sum(1)[:, None, None, None]  # (R, 1, 1, 1) beats taken; +inf sorts after them
    lo = np.take_along_axis(lanes, np.broadcast_to((c - 1) // 2, (*lanes.shape[:3], 1)), -1)
    hi = np.take_along_axis(lanes, np.broadcast_to(c // 2, (*lanes.shape[:3], 1)), -1)
    return ((lo + hi) / 2)[..., 0]


class _Beats:
    """The beats of several records laid end to end in time order: record i holds beats
    first[i] : first[i] + size[i]. Records of up to _CONTEXT_BLOCK beats (every short record)
    are one neighbourhood each and go through NumPy together; longer ones one by one."""

    def __init__(self, first: np.ndarray, size: np.ndarray) -> None:
        self.first, self.size = first, size
        self.of = np.repeat(np.arange(first.size), size)  # (n,) each beat's record
        self.pos = np.arange(self.of.size) - first[self.of]  # its place in the record
        self.small = np.flatnonzero(size <= _CONTEXT_BLOCK)
        self.large = np.flatnonzero(size > _CONTEXT_BLOCK)

    def spread(self, per_record: np.ndarray) -> np.ndarray:
        return per_record[self.of]

    def _padded(self, records: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(R, m) beat indices of `records` padded with their first beat, and where real."""
        m = int(self.size[records].max())
        j = np.arange(m)
        real = j < self.size[records, None]
        return self.first[records, None] + np.where(real, j, 0), real

    def median(self, x: np.ndarray, keep: np.ndarray, fallback: float) -> np.ndarray:
        """(records,) the median of x over each record's beats where `keep` holds."""
        out = np.full(self.first.size, fallback)
        for records in (self.small, self.large):
            if records.size:
                idx, real = self._padded(records)
                take = real & keep[idx]
                has = take.any(1)
                out[records[has]] = _masked_median(x[idx], take, axis=1)[has]
        return out

    def rolling_median(self, x: np.ndarray) -> np.ndarray:
        """(n,) the median of x over each beat's _CONTEXT_BEATS neighbours on either side."""
        out = self.spread(self.median(x, np.ones(x.size, bool), fallback=0.0))
        for r in self.large:
            span = slice(self.first[r], self.first[r] + self.size[r])
            out[span] = _rolling_median(x[span], _CONTEXT_BEATS)
        return out

    def onset_step(self, pre: np.ndarray, ctx: np.ndarray) -> np.ndarray:
        """(n,) for a beat in a fast stretch (each pre-RR premature against the context RR), the
        most abrupt log RR step of the stretch so far; 0 elsewhere. A lone PAC is a stretch of
        one whose step is its prematurity; each beat of an SVTA run inherits the abrupt steps
        of its onset, so the run reads like the PACs the head learns from, where a sinus rate
        that rises gradually has only small steps."""
        step = np.where(self.pos > 0, _log_ratio(pre, np.roll(pre, 1)), 0.0)
        fast = pre < _PREMATURE * ctx
        stretch = np.cumsum(fast & ~np.where(self.pos > 0, np.roll(fast, 1), False))
        # a running minimum that restarts with each stretch: steps lie in [-3, 3], so each
        # stretch, lowered 10 below the one before, never sees an earlier stretch's minimum
        low = 10.0 * stretch
        return np.where(fast, np.minimum.accumulate(step - low) + low, 0.0)

    def neighbours(self, half: int) -> np.ndarray:
        """(n, 2 half + 1) indices of each beat's neighbours, the record's end beat repeated
        past its ends (a moving mean over them is an edge-padded convolution)."""
        j = np.clip(self.pos[:, None] + np.arange(-half, half + 1), 0,
                    self.size[self.of, None] - 1)
        return self.first[self.of, None] + j

    def templates(self, seg: np.ndarray, dominant: np.ndarray) -> np.ndarray:
        """(n, L, S) each beat's dominant template: the median of the dominant beats among
        its neighbours (all of them where fewer than _MIN_DOMINANT are dominant)."""
        out = np.empty_like(seg)
        if self.small.size:
            idx, real = self._padded(self.small)
            take = real & dominant[idx]
            take = np.where(take.sum(1, keepdims=True) < _MIN_DOMINANT, real, take)
            t = _median_over_beats(seg[idx], take)  # (R, L, S)
            beats = np.isin(self.of, self.small)
            out[beats] = t[np.searchsorted(self.small, self.of[beats])]
        for r in self.large:
            lo0, n = int(self.first[r]), int(self.size[r])
            by_beat = np.ascontiguousarray(seg[lo0:lo0 + n].transpose(1, 2, 0))  # (L, S, n)
            for lo in range(0, n, _CONTEXT_BLOCK):
                a, b = max(0, lo - _CONTEXT_BEATS), min(n, lo + _CONTEXT_BLOCK + _CONTEXT_BEATS)
                pick = np.arange(a, b)[dominant[lo0 + a:lo0 + b]]
                pick = pick if pick.size >= _MIN_DOMINANT else np.arange(a, b)
                out[lo0 + lo:lo0 + min(lo + _CONTEXT_BLOCK, n)] = np.median(by_beat[..., pick], -1)
        return out


def beat_features(signal: np.ndarray, rpeaks: np.ndarray, rr: np.ndarray, fs: float,
                  context: np.ndarray) -> np.ndarray:
    """(B, K, N_BEAT_FEATURES) float32 features of the beats of B windows.

    signal (B, L, W) the cleaned windows (masked leads zero), rpeaks (B, K) sample in the
    window (-1: padding), rr (B, K, 4) seconds [pre, post, local mean, pre / local] as
    `rr_features` gives them, context (B, K, N_CONTEXT_FEATURES) `record_context` of the
    windows' records. Rows of padded beats are 0.
    """
    signal = _used_leads(signal)
    rpeaks = np.asarray(rpeaks)
    rr = np.asarray(rr, np.float32)
    valid = rpeaks >= 0  # (B, K)
    pre, post, local = rr[..., 0], rr[..., 1], rr[..., 2]
    known = valid & (pre > 0)
    med = _masked_median(pre, known, axis=1)[:, None]  # (B, 1) the window's median RR
    timing = [_log_ratio(pre, local), _log_ratio(post, local), _log_ratio(pre, post),
              _log_ratio(pre, med), _log_ratio(post, med), _log_ratio(local, med),
              *_irregularity(pre, known, med)]

    dominant = known & (pre >= _PREMATURE * med)
    few = dominant.sum(1, keepdims=True) < _MIN_DOMINANT
    dominant = np.where(few, valid, dominant)[:, :, None, None]  # (B, K, 1, 1)
    qrs = _segments(signal, rpeaks, fs, _QRS_S)
    wide = _segments(signal, rpeaks, fs, _WIDE_S)
    p_wave = _segments(signal, rpeaks, fs, _P_S)
    t_qrs = _masked_median(qrs, dominant, axis=1)[:, None]  # (B, 1, L, S)
    t_wide = _masked_median(wide, dominant, axis=1)[:, None]
    t_p = _masked_median(p_wave, dominant, axis=1)[:, None]
    amp = np.ptp(qrs, -1).sum(-1)  # (B, K) peak-to-peak summed over the leads
    t_amp = np.ptp(t_qrs, -1).sum(-1)
    width = _width_s(qrs, fs)
    slope = (np.diff(qrs, axis=-1) ** 2).sum((-2, -1))
    t_slope = (np.diff(t_qrs, axis=-1) ** 2).sum((-2, -1))
    shape = [_cosine(qrs, t_qrs), _cosine(wide, t_wide), _cosine(p_wave, t_p),
             _log_diff(qrs, t_qrs),
             _log_diff(wide, t_wide), _log_ratio(amp, t_amp), width,
             _log_ratio(width, _width_s(t_qrs, fs)),
             np.clip(np.log((slope + _EPS) / (t_slope + _EPS)), -5.0, 5.0)]
    feats = np.stack([np.broadcast_to(f, valid.shape) for f in timing + shape], -1)
    feats = np.concatenate([feats, np.asarray(context, np.float32)], -1)
    return np.where(known[..., None], feats, 0.0).astype(np.float32)
