"""Per-beat features for the AAMI beat head: timing and morphology relative to the window's own
dominant beat, so that they mean the same in every patient.

Inter-patient beat classification works when each beat is judged against its own patient
(de Chazal 2004; Llamedo & Martinez 2011): a beat is premature (S) if its RR is short *for
this patient*, ectopic ventricular (V) if its QRS differs from *this patient's* dominant beat.
A bundle-branch block widens every beat, the dominant one too, so a wide beat that looks like
its neighbours stays N. The dominant template is the median of the window's beats that are not
premature (pre-RR at least 0.9 of the window's median), which in bigeminy is the sinus beat.

The same function serves training (training/beat_class.py) and `predict --beats`
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

BEAT_FEATURES = ("log_pre_local", "log_post_local", "log_pre_post", "log_pre_median",
                 "log_post_median", "log_local_median", "pre_s", "local_s",
                 "rr_irregularity", "rr_spread",
                 "corr_qrs", "corr_wide", "corr_p", "log_diff_qrs", "log_diff_wide",
                 "log_amplitude", "qrs_width_s", "log_width", "log_slope")
N_BEAT_FEATURES = len(BEAT_FEATURES)


def _log_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.clip(np.log(np.maximum(a, 1e-3) / np.maximum(b, 1e-3)), -3.0, 3.0)


def _masked_median(x: np.ndarray, keep: np.ndarray, axis: int) -> np.ndarray:
    """Median of x over `axis` where `keep` (broadcastable) holds; 0 where nothing is kept."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: windows without beats
        m = np.nanmedian(np.where(keep, x, np.nan), axis=axis)
    return np.nan_to_num(m, nan=0.0)


def _segments(signal: np.ndarray, rpeaks: np.ndarray, fs: float, span: tuple[float, float]
              ) -> np.ndarray:
    """(B, K, L, S) each beat's samples over `span` seconds around its R-peak, less their mean
    per lead (0 off the window)."""
    b, n_leads, w = signal.shape
    offsets = np.arange(int(round(span[0] * fs)), int(round(span[1] * fs)) + 1)
    idx = rpeaks[..., None].astype(np.int64) + offsets  # (B, K, S)
    inside = (idx >= 0) & (idx < w) & (rpeaks[..., None] >= 0)
    flat = np.clip(idx, 0, w - 1).reshape(b, 1, -1)
    seg = np.take_along_axis(signal, np.broadcast_to(flat, (b, n_leads, flat.shape[-1])), 2)
    seg = seg.reshape(b, n_leads, *idx.shape[1:]).transpose(0, 2, 1, 3)  # (B, K, L, S)
    seg = np.where(inside[:, :, None, :], seg, 0.0)
    n_in = np.maximum(inside.sum(-1), 1)[:, :, None, None]
    return np.where(inside[:, :, None, :], seg - seg.sum(-1, keepdims=True) / n_in, 0.0)


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


def beat_features(signal: np.ndarray, rpeaks: np.ndarray, rr: np.ndarray, fs: float
                  ) -> np.ndarray:
    """(B, K, N_BEAT_FEATURES) float32 features of the beats of B windows.

    signal (B, L, W) the cleaned windows (masked leads zero), rpeaks (B, K) sample in the
    window (-1: padding), rr (B, K, 4) seconds [pre, post, local mean, pre / local] as
    `rr_features` gives them. Rows of padded beats are 0.
    """
    signal = np.asarray(signal, np.float32)
    rpeaks = np.asarray(rpeaks)
    rr = np.asarray(rr, np.float32)
    valid = rpeaks >= 0  # (B, K)
    pre, post, local = rr[..., 0], rr[..., 1], rr[..., 2]
    known = valid & (pre > 0)
    med = _masked_median(pre, known, axis=1)[:, None]  # (B, 1) the window's median RR
    timing = [_log_ratio(pre, local), _log_ratio(post, local), _log_ratio(pre, post),
              _log_ratio(pre, med), _log_ratio(post, med), _log_ratio(local, med), pre, local,
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
    return np.where(known[..., None], feats, 0.0).astype(np.float32)
