"""Findings -> edits of a Heart's beat templates and rhythm settings.

Directions are Frank X (left), Y (feet), Z (back); a territory's unit vector points from the
heart towards the leads that face it, so a Q wave there is a wave pointing the other way.
Voltage criteria (LVH Sokolow-Lyon) are measured on the rendered template, so the label holds
for every patient, and normals are kept below the criterion.
"""

from __future__ import annotations

import numpy as np

from ecgmoe_cli.simulate.diagnosis import Diagnosis
from ecgmoe_cli.simulate.dipole import LEADS, project, render_waves
from ecgmoe_cli.simulate.heart import Heart, Template, Wave, span

_FS = 1000.0


def _unit(v: list[float]) -> np.ndarray:
    a = np.asarray(v, dtype=float)
    return a / np.linalg.norm(a)


TERRITORY = {
    "anterior": _unit([0.2, 0.0, -1.0]),  # V1-V4
    "inferior": _unit([0.0, 1.0, 0.0]),  # II, III, aVF
    "lateral": _unit([1.0, -0.35, 0.1]),  # I, aVL, V5, V6
    "posterior": _unit([0.0, 0.0, 1.0]),  # mirror image in V1-V3
    "anterolateral": _unit([0.7, -0.1, -0.7]),
}
_MI_TERRITORY = {"AMI": "anterior", "IMI": "inferior", "LMI": "lateral", "PMI": "posterior"}


def _qrs_leads(tpl: Template) -> np.ndarray:
    """(12, n) QRS-only render of one beat at 1 kHz (for voltage measurements)."""
    waves = [w for w in tpl.values() if w.group == "qrs"]
    t = np.array([w.t for w in waves]) + 0.2
    vcg = render_waves(400, _FS, t, np.array([w.sl for w in waves]),
                       np.array([w.sr for w in waves]), np.array([w.vec for w in waves]))
    return project(vcg)


def sokolow(tpl: Template) -> float:
    """Sokolow-Lyon index (mV): S in V1 + the larger R of V5 and V6."""
    leads = _qrs_leads(tpl)
    v1, v5, v6 = (leads[LEADS.index(n)] for n in ("V1", "V5", "V6"))
    return float(max(0.0, -v1.min()) + max(v5.max(), v6.max()))


def _scale_qrs(tpl: Template, k: float) -> None:
    for w in tpl.values():
        if w.group == "qrs":
            w.vec = w.vec * k


def _widen(tpl: Template, k: float) -> None:
    """Stretch the QRS in time about the R peak."""
    for w in tpl.values():
        if w.group == "qrs":
            w.t, w.sl, w.sr = w.t * k, w.sl * k, w.sr * k


def _voltage(tpl: Template) -> float:
    return float(np.linalg.norm(tpl["R"].vec))


def _axis(tpl: Template, rng: np.random.Generator, lo: float, hi: float) -> None:
    """Turn the R vector's frontal-plane direction to an axis between lo and hi degrees."""
    r = tpl["R"].vec
    mag = float(np.hypot(r[0], r[1]))
    a = np.radians(rng.uniform(lo, hi))
    tpl["R"].vec = np.array([mag * np.cos(a), mag * np.sin(a), r[2]])


def _lbbb(h: Heart, rng: np.random.Generator) -> None:
    """Broad notched R in I, aVL, V5-V6, deep broad S in V1, no septal q, discordant ST-T."""
    v = _voltage(h.qrs) * rng.uniform(1.1, 1.5)
    s = rng.uniform(0.016, 0.022)
    gap = rng.uniform(0.034, 0.046)
    d1, d2 = _unit([0.9, 0.15, 0.75]), _unit([0.75, -0.1, 0.95])
    h.qrs["Q"].vec = np.zeros(3)
    h.qrs["R"] = Wave(0.0, s * 1.3, s, d1 * v, "qrs")
    h.qrs["S"] = Wave(gap, s, s * 1.1, d2 * v * rng.uniform(0.9, 1.1), "qrs")
    main = _unit(list(d1 + d2))
    h.qrs["T"].vec = -main * rng.uniform(0.25, 0.45)
    h.qrs["ST"].vec = -main * rng.uniform(0.06, 0.12)


def _rbbb(h: Heart, rng: np.random.Generator, complete: bool) -> None:
    """A late rightward-anterior wave: R' in V1, broad S in I and V6; T inverted in V1-V3."""
    v = _voltage(h.qrs)
    s_wave = h.qrs["S"]
    if complete:
        sig, lag, amp = rng.uniform(0.016, 0.022), rng.uniform(0.040, 0.050), rng.uniform(0.5, 0.8)
    else:
        sig, lag, amp = rng.uniform(0.008, 0.010), rng.uniform(0.015, 0.020), rng.uniform(0.3, 0.5)
    h.qrs["R2"] = Wave(s_wave.t + lag, sig, sig, _unit([-0.55, 0.05, -0.85]) * v * amp, "qrs")
    if complete:
        h.qrs["T"].vec = h.qrs["T"].vec + np.array([0.0, 0.0, 0.18])


def _fascicular(h: Heart, rng: np.random.Generator, anterior: bool) -> None:
    """LAFB: axis -45..-75 with qR in aVL; LPFB: axis +100..+120 with qR in III."""
    if anterior:
        _axis(h.qrs, rng, -75, -48)
        h.qrs["Q"].vec = _unit([-0.3, 1.0, -0.2]) * 0.15 * _voltage(h.qrs)
    else:
        _axis(h.qrs, rng, 102, 125)
        h.qrs["Q"].vec = _unit([1.0, -0.4, -0.2]) * 0.15 * _voltage(h.qrs)
    _widen(h.qrs, rng.uniform(1.05, 1.12))


def _ivcd(h: Heart, rng: np.random.Generator) -> None:
    """A uniformly slowed QRS (120-140 ms) without bundle-branch shape."""
    on, off = span(h.qrs, ("qrs",))
    _widen(h.qrs, rng.uniform(0.122, 0.140) / (off - on))


def _wpw(h: Heart, rng: np.random.Generator) -> None:
    """Short PR and a slurred delta wave that starts the QRS early."""
    r = h.qrs["R"]
    h.qrs["D"] = Wave(r.t - rng.uniform(0.035, 0.045), rng.uniform(0.018, 0.022), 0.012,
                      r.vec * rng.uniform(0.25, 0.35), "qrs")
    h.qrs["Q"].vec = np.zeros(3)
    h.pr = rng.uniform(0.075, 0.100)


def _lvh(h: Heart, rng: np.random.Generator) -> None:
    """Sokolow-Lyon 3.8-5.5 mV, slightly wider QRS, lateral strain in most."""
    for name in ("R", "S"):
        h.qrs[name].vec = h.qrs[name].vec * np.array([1.0, 1.0, 1.3])
    _scale_qrs(h.qrs, rng.uniform(3.8, 5.5) / max(sokolow(h.qrs), 0.1))
    _widen(h.qrs, rng.uniform(1.05, 1.12))
    if rng.random() < 0.6:
        u = TERRITORY["lateral"]
        h.qrs["T"].vec = -u * rng.uniform(0.15, 0.3) + np.array([0.0, 0.05, 0.1])
        h.qrs["ST"].vec = h.qrs["ST"].vec - u * rng.uniform(0.05, 0.1)


def _rvh(h: Heart, rng: np.random.Generator) -> None:
    """Right axis, dominant R in V1, deep S in V5-V6, right precordial T inversion."""
    v = _voltage(h.qrs) * rng.uniform(1.0, 1.3)
    a = np.radians(rng.uniform(105, 135))
    h.qrs["R"].vec = np.array([np.cos(a), np.sin(a), -rng.uniform(0.9, 1.3)]) * v * 0.8
    h.qrs["S"].vec = _unit([0.9, -0.1, 0.3]) * v * rng.uniform(0.4, 0.6)
    h.qrs["T"].vec = h.qrs["T"].vec + np.array([-0.05, 0.0, 0.2])


def _septal(h: Heart, rng: np.random.Generator) -> None:
    """Septal hypertrophy: deep narrow septal q in I, aVL, V5-V6 and a tall R in V1-V2."""
    q = h.qrs["Q"]
    q.vec = _unit([-0.5, -0.05, -0.85]) * rng.uniform(0.6, 0.9)
    q.sl = q.sr = rng.uniform(0.006, 0.008)


def _infarct(h: Heart, rng: np.random.Generator, where: str) -> None:
    """Pathological Q (>= 40 ms) facing the territory with loss of R there, then ST-T changes."""
    u = TERRITORY[where]
    r = h.qrs["R"]
    if where == "posterior":  # no posterior leads: the mirror image in V1-V3
        r.vec = r.vec - u * _voltage(h.qrs) * rng.uniform(0.8, 1.1)
        h.qrs["T"].vec = h.qrs["T"].vec - u * rng.uniform(0.1, 0.2)
        h.qrs["ST"].vec = h.qrs["ST"].vec + u * rng.uniform(0.05, 0.1)
        return
    toward = float(r.vec @ u)
    if toward > 0:
        r.vec = r.vec - u * toward * rng.uniform(0.7, 0.9)
    h.qrs[f"Q_{where}"] = Wave(r.t - rng.uniform(0.024, 0.028), rng.uniform(0.010, 0.011),
                               rng.uniform(0.009, 0.010), -u * rng.uniform(0.4, 0.8), "qrs")
    t = h.qrs["T"]
    if rng.random() < 0.3:  # acute: ST elevation facing the territory
        h.qrs["ST"].vec = h.qrs["ST"].vec + u * rng.uniform(0.15, 0.35)
        t.vec = t.vec + u * 0.1
    else:  # evolved: T inverted in the territory
        t.vec = t.vec - u * (max(float(t.vec @ u), 0.0) + rng.uniform(0.15, 0.3))


def _stt(h: Heart, dx: Diagnosis, rng: np.random.Generator) -> None:
    t = h.qrs["T"]
    if "NDT" in dx.findings:  # flat or shallow-inverted T, no ST shift
        t.vec = t.vec * rng.uniform(-0.35, 0.2)
    if "ISC" in dx.findings:  # horizontal ST depression and T inversion facing the territory
        u = TERRITORY[dx.territory.get("ISC", "lateral")]
        h.qrs["ST"].vec = h.qrs["ST"].vec - u * rng.uniform(0.12, 0.25)
        t.vec = t.vec - u * (max(float(t.vec @ u), 0.0) * 1.2 + rng.uniform(0.05, 0.15))


def _atria(h: Heart, dx: Diagnosis, rng: np.random.Generator) -> None:
    if "LAE" in dx.findings:  # broad notched P (> 120 ms), deep terminal negativity in V1
        la = h.p["LA"]
        la.t, la.sl, la.sr = rng.uniform(0.095, 0.11), 0.02, 0.022
        la.vec = la.vec * rng.uniform(1.3, 1.7) + np.array([0.0, 0.0, rng.uniform(0.06, 0.1)])
    if "RAE" in dx.findings:  # tall peaked P in II, III, aVF (> 0.25 mV)
        ra = h.p["RA"]
        ra.vec = _unit([0.15, 1.0, -0.35]) * rng.uniform(0.28, 0.38)
        ra.sl = ra.sr = 0.014


def _potassium(h: Heart, dx: Diagnosis, rng: np.random.Generator) -> None:
    t = h.qrs["T"]
    if dx.potassium == "hyper":  # tall narrow peaked T, flat P, longer PR, wider QRS
        t.vec = t.vec * rng.uniform(2.0, 3.0)
        t.sl, t.sr = t.sl * 0.6, t.sr * 0.6
        for w in h.p.values():
            w.vec = w.vec * rng.uniform(0.35, 0.6)
        h.pr = min(h.pr + rng.uniform(0.015, 0.03), 0.195) if h.pr < 0.2 else h.pr + 0.02
        _widen(h.qrs, rng.uniform(1.08, 1.15))
    elif dx.potassium == "hypo":  # flat T, prominent U, slight ST depression
        d = t.vec / max(np.linalg.norm(t.vec), 1e-6)
        t.vec = t.vec * rng.uniform(0.2, 0.45)
        h.qrs["U"].vec = d * rng.uniform(0.12, 0.22)
        h.qrs["ST"].vec = h.qrs["ST"].vec - d * rng.uniform(0.04, 0.07)


def _rhythm(h: Heart, dx: Diagnosis, rng: np.random.Generator) -> None:
    f = dx.findings
    if "AFIB" in f:
        h.atrial = "af"
        h.hr = rng.uniform(105, 150) if dx.rvr else rng.uniform(60, 95)
        h.rr_cv_af = rng.uniform(0.15, 0.28)
        h.af_amp = rng.uniform(0.04, 0.12)
    elif "AFLT" in f:
        h.atrial = "flutter"
        h.flutter_hz = rng.uniform(4.5, 5.5)
        h.flutter_ratio = int(rng.choice([2, 4, 0]))
        h.hr = h.flutter_hz * 60.0 / (h.flutter_ratio or 3)
        h.af_amp = rng.uniform(0.15, 0.3)
    elif "STACH" in f:
        h.hr = rng.uniform(106, 150)
        h.pr = max(h.pr - 0.015, 0.12)
    elif "SBRAD" in f:
        h.hr = rng.uniform(38, 54)
    elif "SARRH" in f:
        h.hr = rng.uniform(62, 88)
        h.hrv_hf = rng.uniform(0.09, 0.16)
        h.resp_hz = rng.uniform(0.15, 0.25)
    elif "EAR" in f:
        h.atrial = "ectopic"
        h.hr = rng.uniform(62, 95)
    elif "PACE" in f:
        h.paced = True
        v = float(np.linalg.norm(h.pvc["R"].vec))
        h.pvc = {"R": Wave(0.0, 0.03, 0.035, _unit([0.6, -0.7, 0.8]) * v, "qrs"),
                 "T": Wave(0.30, 0.08, 0.05, -_unit([0.6, -0.7, 0.8]) * v * 0.3, "t")}
    h.ectopy = {"PAC": "pac", "PVC": "pvc", "BIGU": "bigeminy", "TRIGU": "trigeminy"}.get(
        next(iter(sorted(f & {"PAC", "PVC", "BIGU", "TRIGU"})), ""), "")
    if "1AVB" in f:
        h.pr = rng.uniform(0.22, 0.32)
    elif "2AVB" in f:
        h.av = "wenckebach" if rng.random() < 0.6 else "mobitz2"
    elif "3AVB" in f:
        h.av = "complete"
        h.escape_hr = rng.uniform(34, 48)


def apply(h: Heart, dx: Diagnosis, rng: np.random.Generator) -> None:
    """Edit a normal heart so that it shows every finding of `dx` (and nothing it does not list)."""
    f = dx.findings
    if sokolow(h.qrs) > 3.1 and "LVH" not in f:  # keep normals clearly below the LVH criterion
        _scale_qrs(h.qrs, 3.1 / sokolow(h.qrs))
    if "CLBBB" in f:
        _lbbb(h, rng)
    if f & {"CRBBB", "IRBBB"}:
        _rbbb(h, rng, complete="CRBBB" in f)
    if f & {"LAFB", "LPFB"}:
        _fascicular(h, rng, anterior="LAFB" in f)
    if "IVCD" in f:
        _ivcd(h, rng)
    if "WPW" in f:
        _wpw(h, rng)
    if "LVH" in f:
        _lvh(h, rng)
    if "RVH" in f:
        _rvh(h, rng)
    if "SEHYP" in f:
        _septal(h, rng)
    for code, where in _MI_TERRITORY.items():
        if code in f:
            _infarct(h, rng, where)
    _stt(h, dx, rng)
    _atria(h, dx, rng)
    _potassium(h, dx, rng)
    if "LNGQT" in f:
        h.qtc = rng.uniform(0.48, 0.56)
    _rhythm(h, dx, rng)
    if f & {"CLBBB", "CRBBB", "IVCD", "WPW"}:  # QT includes the wider QRS
        on, off = span(h.qrs, ("qrs",))
        h.qtc += max(0.0, (off - on) - 0.095)
