"""Schedule + heart -> the clean 12-lead signal and its ground-truth wave fiducials."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecgmoe_cli.simulate.dipole import DOWER, project, render_waves
from ecgmoe_cli.simulate.heart import EDGE, Heart, Template, span
from ecgmoe_cli.simulate.rhythm import ESCAPE, PACED, PVC, SINUS, Schedule

_QT_GROUPS = ("st", "t", "u")


@dataclass
class Truth:
    """Ground truth of one record, in samples (ventricular beats and P waves inside the record)."""

    r: np.ndarray  # R peaks
    kind: np.ndarray  # rhythm.SINUS | PVC | ESCAPE | PACED
    qrs_on: np.ndarray
    qrs_off: np.ndarray
    t_off: np.ndarray
    p_on: np.ndarray
    p_off: np.ndarray
    rr_ms: float  # mean RR of the generated beats (all beats in the record), ms


def _template_arrays(tpl: Template) -> tuple[np.ndarray, ...]:
    waves = [w for w in tpl.values() if float(np.abs(w.vec).max()) > 1e-4]
    t = np.array([w.t for w in waves])
    sl = np.array([w.sl for w in waves])
    sr = np.array([w.sr for w in waves])
    vec = np.array([w.vec for w in waves]).reshape(-1, 3)
    qt = np.array([w.group in _QT_GROUPS for w in waves], dtype=bool)
    return t, sl, sr, vec, qt


def _beats(tpl: Template, times: np.ndarray, qt_scale: np.ndarray, amp: np.ndarray
           ) -> tuple[np.ndarray, ...]:
    """Wave centres, widths and vectors of one template repeated at `times` (all beats at once)."""
    t, sl, sr, vec, qt = _template_arrays(tpl)
    on = span(tpl, ("qrs",))[0] if qt.any() else 0.0
    f = np.where(qt[None, :], qt_scale[:, None], 1.0)  # (B, K): repolarisation follows the RR
    centre = times[:, None] + on + (t[None, :] - on) * f
    vecs = vec[None, :, :] * amp[:, None, None]
    return (centre.ravel(), (sl * f).ravel(), (sr * f).ravel(), vecs.reshape(-1, 3))


def _atrial_waves(h: Heart, n: int, fs: float, s: Schedule, rng: np.random.Generator) -> np.ndarray:
    """Fibrillatory or flutter waves as a (3, n) VCG (AF: irregular 4-8 Hz; flutter: sawtooth)."""
    t = np.arange(n) / fs
    if h.atrial == "af":
        sig = np.zeros(n)
        for _ in range(3):
            f = rng.uniform(4.5, 8.0)
            wob = rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * t
                                                 + rng.uniform(0, 6.3))
            sig += rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3) + wob)
        sig *= h.af_amp / 1.5
        vec = np.array([0.1, 0.3, -0.9])
    else:
        x = (t - s.flutter_t0) * h.flutter_hz
        k = np.arange(1, 6)[:, None]
        sig = (np.sin(2 * np.pi * k * x[None, :]) / k).sum(axis=0) * (h.af_amp / 1.2)
        vec = np.array([0.15, 1.0, -0.3])
    return (vec / np.linalg.norm(vec))[:, None] * sig[None, :]


def render(h: Heart, s: Schedule, n: int, fs: float, rng: np.random.Generator
           ) -> tuple[np.ndarray, Truth]:
    """The clean (12, n) signal in mV, and the fiducials of every wave that fired."""
    rr = np.diff(s.r, prepend=s.r[0] - 60.0 / h.hr) if s.r.size else s.r
    rr_mean = 60.0 / h.hr
    qt_scale = np.clip(rr / rr_mean, 0.5, 2.0) ** (1.0 / 3.0)
    amp = 1.0 + 0.04 * np.sin(2 * np.pi * h.resp_hz * s.r + rng.uniform(0, 6.3))  # breathing
    parts = []
    on_off = np.zeros((s.r.size, 3))
    for kinds, tpl in (((SINUS, ESCAPE), h.qrs), ((PVC, PACED), h.pvc)):
        sel = np.isin(s.kind, kinds)
        if sel.any():
            parts.append(_beats(tpl, s.r[sel], qt_scale[sel], amp[sel]))
            on, off = span(tpl, ("qrs",))
            t_end = max(w.t + EDGE * w.sr for w in tpl.values() if w.group == "t")
            on_off[sel] = np.stack([np.full(sel.sum(), on), np.full(sel.sum(), off),
                                    on + (t_end - on) * qt_scale[sel]], axis=1)
    p_on = p_off = np.zeros(0)
    for ectopic, tpl in ((False, h.p), (True, h.pac_p)):
        sel = s.p_ectopic == ectopic
        if sel.any():
            one = np.ones(int(sel.sum()))
            parts.append(_beats(tpl, s.p[sel], one, one))
    on_p, off_p = span(h.p, ("p",))
    if s.p.size and np.isfinite(on_p):  # a P too small to see has no fiducials
        p_on, p_off = s.p + on_p, s.p + off_p
    centre, sl, sr, vec = (np.concatenate(x) for x in zip(*parts)) if parts else (np.zeros(0),) * 4
    vcg = render_waves(n, fs, centre, sl, sr, vec.reshape(-1, 3))
    if h.atrial in ("af", "flutter"):
        vcg += _atrial_waves(h, n, fs, s, rng)
    sig = project(vcg)
    if s.spikes.size:  # pacemaker spikes: one-sample pulses, too fast for the dipole model
        idx = np.round(s.spikes * fs).astype(np.int64)
        idx = idx[(idx >= 0) & (idx < n - 1)]
        lead_amp = DOWER @ np.array([0.6, 1.6, -0.4])
        sig[:, idx] += lead_amp[:, None]
        sig[:, idx + 1] -= 0.3 * lead_amp[:, None]
    inside = (s.r >= 0) & (s.r < n / fs)
    rr_in = np.diff(s.r[inside]) if inside.sum() > 1 else np.diff(s.r)
    p_in = (s.p >= 0) & (s.p < n / fs)

    def samples(x: np.ndarray) -> np.ndarray:
        return np.round(x * fs).astype(np.int64)

    truth = Truth(
        r=samples(s.r[inside]),
        kind=s.kind[inside],
        qrs_on=samples(s.r[inside] + on_off[inside, 0]),
        qrs_off=samples(s.r[inside] + on_off[inside, 1]),
        t_off=samples(s.r[inside] + on_off[inside, 2]),
        p_on=samples(p_on[p_in]) if p_on.size else np.zeros(0, np.int64),
        p_off=samples(p_off[p_in]) if p_off.size else np.zeros(0, np.int64),
        rr_ms=float(rr_in.mean() * 1000.0) if rr_in.size else float("nan"),
    )
    return sig, truth
