"""One synthetic patient's heart: beat templates (Gaussian waves) and rhythm settings.

A template is a dict of named waves whose times are seconds relative to the R peak (QRS, ST, T, U)
or to the P onset (P waves). Pathologies edit these dicts; `render` turns beat times into a VCG.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ecgmoe_cli.simulate.dipole import rotation

EDGE = 2.5  # a wave starts/ends this many widths from its centre (exp(-3.1) = 4 % of its peak)


@dataclass
class Wave:
    """One asymmetric Gaussian wave of the dipole."""

    t: float  # centre, s (relative to the R peak, or to the P onset for P waves)
    sl: float  # width before the centre, s
    sr: float  # width after the centre, s
    vec: np.ndarray  # (3,) peak vector, mV, Frank X Y Z
    group: str  # p | qrs | st | t | u


Template = dict[str, Wave]


def _w(t: float, sl: float, sr: float, vec: list[float], group: str) -> Wave:
    return Wave(t, sl, sr, np.asarray(vec, dtype=float), group)


@dataclass
class Heart:
    """Everything that stays fixed within one record of one patient."""

    age: float
    female: bool
    hr: float  # mean ventricular (or sinus) rate, bpm
    pr: float  # P onset -> QRS onset, s
    qtc: float  # Fridericia-corrected QT, s
    qrs: Template  # conducted beat, relative to R
    p: Template  # sinus P, relative to P onset
    pac_p: Template  # ectopic atrial P (PACs, ectopic atrial rhythm)
    pvc: Template  # premature ventricular beat, relative to its R
    atrial: str = "sinus"  # sinus | ectopic | af | flutter
    av: str = "normal"  # normal | wenckebach | mobitz2 | complete
    ectopy: str = ""  # "" | pac | pvc | bigeminy | trigeminy
    paced: bool = False
    hrv_lf: float = 0.02  # relative RR modulation at ~0.1 Hz
    hrv_hf: float = 0.02  # relative RR modulation at the breathing rate
    resp_hz: float = 0.25
    rr_cv_af: float = 0.0  # RR coefficient of variation in AF
    af_amp: float = 0.0  # fibrillatory-wave amplitude, mV
    flutter_hz: float = 5.0
    flutter_ratio: int = 2  # 0: variable 2-4:1
    escape_hr: float = 40.0
    potassium: str = ""  # "" | hyper | hypo
    codes: dict[str, float] = field(default_factory=dict)  # SCP code -> likelihood


def span(tpl: Template, groups: tuple[str, ...]) -> tuple[float, float]:
    """Onset and offset (s) of the waves in `groups` that are big enough to see (> 0.02 mV)."""
    on, off = np.inf, -np.inf
    for w in tpl.values():
        if w.group in groups and float(np.abs(w.vec).max()) > 0.02:
            on, off = min(on, w.t - EDGE * w.sl), max(off, w.t + EDGE * w.sr)
    return on, off


def place_t(tpl: Template, qt: float) -> None:
    """Put the T wave so that it ends `qt` s after the QRS onset (widths scale with QT)."""
    on, _ = span(tpl, ("qrs",))
    t = tpl["T"]
    scale = qt / 0.40
    t.sr, t.sl = 0.042 * scale, 0.068 * scale
    t.t = on + qt - EDGE * t.sr
    if "U" in tpl:
        tpl["U"].t = t.t + 0.17 * scale
    if "ST" in tpl:
        _, off = span(tpl, ("qrs",))
        tpl["ST"].t = off + 0.045


def normal_heart(rng: np.random.Generator, age: float, female: bool) -> Heart:
    """A healthy adult: axis, voltages and intervals vary by patient, sex and age."""
    # Mean Q, R, S vectors fitted (Dower projection) to the median beat's per-lead positive and
    # negative QRS peaks of the real NSR records (benchmarks/simulate_realism.py). QRS voltage
    # falls with age and is lower in women; QRS is ~6 ms shorter in women.
    volt = float(np.exp(rng.normal(0.0, 0.25))) * (0.85 if female else 1.0)
    volt *= float(np.clip(1.0 - 0.006 * (age - 45.0), 0.7, 1.2))
    d = float(np.clip(rng.normal(0.088 if female else 0.094, 0.007), 0.078, 0.106))
    q, r, s = (
        _w(-0.30 * d, 0.08 * d, 0.08 * d, [-0.12, 0.10, -0.13], "qrs"),
        _w(0.0, 0.09 * d, 0.085 * d, [1.05, 0.58, 0.46], "qrs"),
        _w(0.24 * d, 0.09 * d, 0.10 * d, [0.02, -0.01, 0.85], "qrs"),
    )
    for w in (q, r, s):
        w.vec = w.vec * volt
    tamp = float(np.exp(rng.normal(0.0, 0.2))) * (0.85 if female else 1.0)
    qrs: Template = {
        "Q": q,
        "R": r,
        "S": s,
        "ST": _w(0.0, 0.02, 0.08, [0.0, 0.0, 0.0], "st"),
        "T": _w(0.0, 0.07, 0.04, [0.28 * tamp, 0.22 * tamp, -0.15 * tamp], "t"),
        "U": _w(0.0, 0.04, 0.04, [0.0, 0.0, 0.0], "u"),
    }
    # Axis: the frontal QRS axis drifts leftwards with age (a quarter of a degree per year).
    rot = rotation(rng.normal(0, 12), rng.normal(0, 8), rng.normal(0, 15) - 0.25 * (age - 50))
    for w in qrs.values():
        w.vec = rot @ w.vec
    pamp = float(np.exp(rng.normal(0.0, 0.2)))
    p: Template = {
        "RA": _w(0.045, 0.016, 0.016, [0.03 * pamp, 0.09 * pamp, -0.05 * pamp], "p"),
        "LA": _w(0.070, 0.016, 0.016, [0.07 * pamp, 0.05 * pamp, 0.04 * pamp], "p"),
    }
    pac_p: Template = {
        "RA": _w(0.04, 0.018, 0.018, [0.06 * pamp, -0.08 * pamp, -0.03 * pamp], "p"),
        "LA": _w(0.065, 0.018, 0.018, [0.03 * pamp, -0.04 * pamp, 0.03 * pamp], "p"),
    }
    # QTc is ~15 ms longer in women and lengthens ~0.4 ms per year of age.
    qtc = float(np.clip(rng.normal(0.400 + (0.015 if female else 0.0) + 0.0004 * (age - 50), 0.012),
                        0.365, 0.440))
    hr = float(np.clip(rng.normal(72 + (3 if female else 0) - 0.08 * (age - 50), 8), 62, 95))
    pr = float(np.clip(rng.normal(0.160 + 0.0004 * (age - 50), 0.014), 0.140, 0.192))
    h = Heart(age=age, female=female, hr=hr, pr=pr, qtc=qtc, qrs=qrs, p=p, pac_p=pac_p,
              pvc=pvc_template(rng, volt))
    h.hrv_lf = float(rng.uniform(0.01, 0.03)) * (1.2 if age < 40 else 0.8)
    h.hrv_hf = float(rng.uniform(0.01, 0.03)) * (1.3 if age < 40 else 0.7)
    h.resp_hz = float(rng.uniform(0.2, 0.33))
    return h


def pvc_template(rng: np.random.Generator, volt: float) -> Template:
    """A wide bizarre ventricular beat with a discordant T (an LBBB- or RBBB-like focus)."""
    sign = 1.0 if rng.random() < 0.5 else -1.0  # right- or left-ventricular origin
    v = np.array([1.2 * sign, rng.uniform(-0.6, 1.0), 0.9 * sign]) * volt * rng.uniform(1.0, 1.6)
    return {
        "R": Wave(0.0, 0.030, 0.035, v, "qrs"),
        "S": Wave(0.045, 0.02, 0.025, -0.25 * v, "qrs"),
        "T": Wave(0.26, 0.07, 0.05, -0.35 * v, "t"),
    }


def qt_now(h: Heart) -> float:
    """QT (s) at the mean heart rate, from Fridericia: QT = QTc * RR^(1/3)."""
    return h.qtc * (60.0 / h.hr) ** (1.0 / 3.0)
