"""Beat timing: sinus RR with heart-rate variability, AF, flutter, ectopy, AV block and pacing."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecgmoe_cli.simulate.heart import Heart, span

SINUS, PVC, ESCAPE, PACED = 0, 1, 2, 3  # ventricular beat kinds
LEAD_IN = 1.5  # s simulated before the record starts, so it opens mid-rhythm


@dataclass
class Schedule:
    """When each wave fires during one record (seconds from the record start; may be < 0)."""

    r: np.ndarray  # R-peak times of ventricular beats
    kind: np.ndarray  # SINUS | PVC | ESCAPE | PACED per ventricular beat
    p: np.ndarray  # P-onset times (empty in AF / flutter)
    p_ectopic: np.ndarray  # bool per P: ectopic atrial focus (PAC or ectopic atrial rhythm)
    spikes: np.ndarray  # pacemaker spike times
    flutter_t0: float = 0.0  # phase of the flutter wave


def _sinus_intervals(h: Heart, rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    """RR intervals (s) with low-frequency and respiratory modulation plus a little noise."""
    base = 60.0 / rate
    tn = np.arange(n) * base
    lf = h.hrv_lf * np.sin(2 * np.pi * rng.uniform(0.08, 0.12) * tn + rng.uniform(0, 2 * np.pi))
    hf = h.hrv_hf * np.sin(2 * np.pi * h.resp_hz * tn + rng.uniform(0, 2 * np.pi))
    return base * (1.0 + lf + hf + rng.normal(0.0, 0.006, n))


def _conduct(h: Heart, rng: np.random.Generator, n_p: int) -> tuple[np.ndarray, np.ndarray]:
    """PR interval of each P wave and whether it reaches the ventricles (AV block patterns)."""
    pr = np.full(n_p, h.pr)
    ok = np.ones(n_p, dtype=bool)
    if h.av == "wenckebach":  # PR lengthens by shrinking steps until a P is blocked
        m = int(rng.integers(3, 6))
        j = (np.arange(n_p) + int(rng.integers(0, m))) % m
        pr = h.pr + 0.20 * (1.0 - 0.55**j)
        ok = j != m - 1
    elif h.av == "mobitz2":
        m = int(rng.integers(2, 5))
        ok = (np.arange(n_p) + int(rng.integers(0, m))) % m != 0
    elif h.av == "complete":
        ok[:] = False
    return pr, ok


def schedule(h: Heart, rng: np.random.Generator, duration: float) -> Schedule:
    """Draw the beat times of one record from the heart's rhythm settings."""
    t_end = duration + 1.0
    on_rel, _ = span(h.qrs, ("qrs",))  # QRS onset relative to R (negative)
    empty = np.zeros(0)
    if h.atrial in ("af", "flutter"):
        if h.atrial == "af":
            n = int((t_end + LEAD_IN) / (60.0 / h.hr) * 1.6) + 4
            rr = (60.0 / h.hr) * rng.lognormal(0.0, h.rr_cv_af, n)
            rr = np.maximum(rr, 0.28)
            t0 = 0.0
        else:
            fcl = 1.0 / h.flutter_hz
            n = int((t_end + LEAD_IN) / fcl / 2) + 4
            ratios = (np.full(n, h.flutter_ratio) if h.flutter_ratio else rng.integers(2, 5, n))
            rr = ratios.astype(float) * fcl
            t0 = float(rng.uniform(0, fcl))
        r = -LEAD_IN + rng.uniform(0, 60.0 / h.hr) + np.cumsum(rr) - rr[0]
        r = r[r < t_end]
        return Schedule(r, np.full(r.size, SINUS), empty, empty.astype(bool), empty, t0)

    rate = h.hr
    n = int((t_end + LEAD_IN) / (60.0 / rate) * 1.3) + 4
    iv = _sinus_intervals(h, rng, n, rate)
    ectopic = np.full(n, h.atrial == "ectopic")
    if h.ectopy == "pac":  # premature P, sinus node reset: the pause is not compensatory
        k = rng.choice(np.arange(2, n - 2), size=int(rng.integers(1, 3)), replace=False)
        iv[k] *= rng.uniform(0.6, 0.78, k.size)
        ectopic[k] = True
    p = -LEAD_IN + rng.uniform(0, iv[0]) + np.cumsum(iv) - iv[0]
    keep = p < t_end
    p, ectopic = p[keep], ectopic[keep]
    pr, ok = _conduct(h, rng, p.size)
    r = p + pr - on_rel
    kind = np.full(p.size, SINUS)
    spikes = empty
    if h.paced:  # dual-chamber pacing: ventricle paced a fixed AV delay after each P
        kind[:] = PACED
        on_pvc, _ = span(h.pvc, ("qrs",))
        spikes = p + 0.16
        r = spikes + 0.01 - on_pvc
    r, kind = r[ok], kind[ok]
    if h.ectopy in ("pvc", "bigeminy", "trigeminy") and r.size > 3:
        step = {"bigeminy": 2, "trigeminy": 3}.get(h.ectopy, 0)
        if step:
            idx = np.arange(int(rng.integers(0, step)), r.size - 1, step)
        else:
            idx = rng.choice(np.arange(1, r.size - 1), size=int(rng.integers(1, 3)), replace=False)
        idx = np.sort(idx)
        couple = np.median(np.diff(r)) * rng.uniform(0.55, 0.7)
        v = r[idx] + couple
        # The sinus beat right after a PVC meets refractory ventricles: fully compensatory pause.
        blocked = np.zeros(r.size, dtype=bool)
        blocked[idx + 1] = True
        r = np.concatenate([r[~blocked], v])
        kind = np.concatenate([kind[~blocked], np.full(v.size, PVC)])
        order = np.argsort(r, kind="stable")
        r, kind = r[order], kind[order]
    if h.av == "complete":  # AV dissociation: a slow regular escape rhythm of its own
        m = int((t_end + LEAD_IN) / (60.0 / h.escape_hr)) + 3
        esc = -LEAD_IN + rng.uniform(0, 60.0 / h.escape_hr) + np.arange(m) * 60.0 / h.escape_hr
        esc = esc + rng.normal(0, 0.01, m)
        r, kind = esc[esc < t_end], np.full(int((esc < t_end).sum()), ESCAPE)
    return Schedule(r, kind, p, ectopic, spikes)
