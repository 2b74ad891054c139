"""Interval and voltage measurements on a noise-free 12-lead signal, independent of the simulator.

R peaks come from the project's detector; wave boundaries are read from the all-lead envelope
(max |x| over leads): the isoelectric line of a clean render is exactly 0, so a boundary is where
the envelope falls below a small threshold or reaches the valley between two waves.
"""

from __future__ import annotations

import numpy as np

from ecgmoe_cli.signal.rpeaks import detect_rpeaks

THRESH = 0.02  # mV
VEL_FRAC = 0.05  # QRS: spatial velocity above this share of the beat's peak


def _below(env: np.ndarray, i: int, step: int, stop: int) -> int:
    """From i, move by step until env < THRESH (or `stop`)."""
    while i != stop and env[i] >= THRESH:
        i += step
    return i


def _qrs(vel: np.ndarray, i: int, lo: int, hi: int, gap: int) -> tuple[int, int]:
    """The run of high spatial velocity around sample i, bridging dips shorter than `gap`."""
    hot = np.flatnonzero(vel[lo:hi] > VEL_FRAC * vel[lo:hi].max()) + lo
    on = off = i
    for j in hot[hot < i][::-1]:
        if on - j > gap:
            break
        on = j
    for j in hot[hot > i]:
        if j - off > gap:
            break
        off = j
    return on, off


def beats(clean: np.ndarray, fs: float) -> list[dict[str, float]]:
    """Per inner beat: rr, pr, qrs, qt, pr (s) and p_amp (mV), NaN where a wave is absent."""
    env = np.abs(clean).max(axis=0)
    vel = np.convolve(np.abs(np.diff(clean, axis=1)).sum(axis=0), np.ones(5) / 5, mode="same")
    r = detect_rpeaks(clean, fs)
    out = []
    w = int(0.04 * fs)
    t_end_prev = r[0] + int(0.4 * fs)
    for k in range(1, r.size - 1):
        i = int(np.argmax(env[r[k] - w: r[k] + w])) + r[k] - w
        lo, hi = (r[k - 1] + r[k]) // 2, (r[k] + r[k + 1]) // 2
        on, off = _qrs(vel, i, max(lo, i - int(0.15 * fs)), min(hi, i + int(0.2 * fs)),
                       int(0.02 * fs))
        t_lo, t_hi = off + int(0.04 * fs), min(r[k + 1] - int(0.12 * fs), on + int(0.65 * fs))
        qt = np.nan
        p_lo = max(on - int(0.3 * fs), t_end_prev + 1)
        if t_hi > t_lo + 5:
            tp = t_lo + int(np.argmax(env[t_lo:t_hi]))
            t_end_prev = _below(env, tp, 1, r[k + 1])
            qt = (t_end_prev - on) / fs
        else:
            t_end_prev = off + int(0.3 * fs)
        pr = p_amp = np.nan
        seg = env[p_lo: on - int(0.01 * fs)]
        if seg.size > 5 and seg.max() > 0.03:
            pp = p_lo + int(np.argmax(seg))
            pr, p_amp = (on - _below(env, pp, -1, p_lo)) / fs, float(seg.max())
        out.append({"rr": (r[k + 1] - r[k]) / fs, "pr": pr, "qrs": (off - on) / fs, "qt": qt,
                    "p_amp": p_amp})
    return out


def _nanmedian(v: list[float]) -> float:
    a = np.asarray(v, dtype=float)
    return float(np.median(a[np.isfinite(a)])) if np.isfinite(a).any() else float("nan")


def _nanstd(v: list[float]) -> float:
    a = np.asarray(v, dtype=float)
    return float(np.std(a[np.isfinite(a)])) if np.isfinite(a).sum() > 1 else float("nan")


def summary(clean: np.ndarray, fs: float) -> dict[str, float]:
    """Record medians: hr (bpm), pr, qrs, qt, qtc (Fridericia), in ms; rr_cv; p_found share."""
    b = beats(clean, fs)
    rr = np.array([x["rr"] for x in b])
    med = {k: _nanmedian([x[k] for x in b]) for k in ("pr", "qrs", "qt")}
    rr_mean = float(rr.mean()) if rr.size else np.nan
    return {
        "hr": 60.0 / rr_mean,
        "rr_cv": float(rr.std() / rr_mean) if rr.size else np.nan,
        "pr": med["pr"] * 1000, "qrs": med["qrs"] * 1000, "qt": med["qt"] * 1000,
        "qtc": med["qt"] / rr_mean ** (1 / 3) * 1000,
        "p_found": float(np.mean([np.isfinite(x["pr"]) for x in b])) if b else np.nan,
        "pr_sd": _nanstd([x["pr"] for x in b]) * 1000,
    }


def q_waves(clean: np.ndarray, fs: float, lead_rows: list[int]) -> list[float]:
    """Median initial negative deflection (Q) width in ms per lead, 0 where the QRS starts
    upwards."""
    vel = np.convolve(np.abs(np.diff(clean, axis=1)).sum(axis=0), np.ones(5) / 5, mode="same")
    r = detect_rpeaks(clean, fs)
    widths: list[list[float]] = [[] for _ in lead_rows]
    for k in range(1, r.size - 1):
        lo, hi = (r[k - 1] + r[k]) // 2, (r[k] + r[k + 1]) // 2
        on, off = _qrs(vel, r[k], max(lo, r[k] - int(0.15 * fs)), min(hi, r[k] + int(0.2 * fs)),
                       int(0.02 * fs))
        for j, row in enumerate(lead_rows):
            x = clean[row, on: off + 1]
            big = np.flatnonzero(np.abs(x) > 0.05)
            if big.size == 0 or x[big[0]] > 0:
                widths[j].append(0.0)
                continue
            up = np.flatnonzero(x[big[0]:] >= 0)
            widths[j].append(1000.0 * (big[0] + (up[0] if up.size else x.size - big[0])) / fs)
    return [float(np.median(w)) if w else float("nan") for w in widths]


def sokolow_lyon(clean: np.ndarray, fs: float) -> float:
    """S in V1 plus the larger R of V5 and V6 (mV), medians over beats."""
    r = detect_rpeaks(clean, fs)
    w = int(0.08 * fs)
    vals = [max(0.0, -clean[6, i - w: i + w].min()) + max(clean[10, i - w: i + w].max(),
                                                          clean[11, i - w: i + w].max())
            for i in r[1:-1]]
    return float(np.median(vals))
