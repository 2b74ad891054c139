"""The cardiac dipole: Gaussian waves in 3-D (Frank X, Y, Z) rendered fast, then projected to
12 leads.

Axes follow the Frank lead system: X points to the patient's left, Y to the feet, Z to the back.
"""

from __future__ import annotations

import numpy as np

LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]

# Dower et al. (J Electrocardiol 1980;13:189 and 1988;21:S182) transform from Frank X, Y, Z to the
# eight independent leads; rows I, II, V1..V6. The other four limb leads follow from
# Einthoven's law.
_DOWER_8 = np.array(
    [
        [0.632, -0.235, 0.059],  # I
        [0.235, 1.066, -0.132],  # II
        [-0.515, 0.157, -0.917],  # V1
        [0.044, 0.164, -1.387],  # V2
        [0.882, 0.098, -1.277],  # V3
        [1.213, 0.127, -0.601],  # V4
        [1.125, 0.127, -0.086],  # V5
        [0.831, 0.076, 0.230],  # V6
    ]
)


def _twelve_from_eight(m8: np.ndarray) -> np.ndarray:
    """Rows I, II, V1..V6 -> the 12 standard leads (III = II - I, aVR = -(I + II)/2, ...)."""
    i, ii = m8[0], m8[1]
    limb = np.stack([i, ii, ii - i, -(i + ii) / 2, i - ii / 2, ii - i / 2])
    return np.concatenate([limb, m8[2:]])


# Limb leads from the Dower matrix come out about a third smaller than in the real normal records
# (benchmarks/simulate_realism.py, docs/REALISM.md): rows I and II are scaled, so Einthoven's
# law and the axis are kept.
LIMB_GAIN = 1.5
DOWER = _twelve_from_eight(_DOWER_8 * np.r_[LIMB_GAIN, LIMB_GAIN, np.ones(6)][:, None])
# (12, 3): lead = DOWER @ [X, Y, Z]


def project(vcg: np.ndarray) -> np.ndarray:
    """(3, n) Frank VCG in mV -> (12, n) standard leads in mV."""
    return DOWER @ vcg


def render_waves(
    n: int,
    fs: float,
    centre: np.ndarray,
    sig_l: np.ndarray,
    sig_r: np.ndarray,
    vec: np.ndarray,
) -> np.ndarray:
    """Sum asymmetric Gaussian waves into a (3, n) VCG without a per-sample loop.

    centre, sig_l, sig_r: (K,) seconds; vec: (K, 3) peak vector in mV. Each wave is evaluated only
    on the samples within 4 widths of its centre, then scattered with one bincount per axis.
    """
    out = np.zeros((3, n))
    if centre.size == 0:
        return out
    half = int(np.ceil(4.0 * max(float(sig_l.max()), float(sig_r.max())) * fs)) + 1
    offs = np.arange(-half, half + 1)
    c_idx = np.round(centre * fs).astype(np.int64)
    idx = c_idx[:, None] + offs[None, :]  # (K, W)
    dt = idx / fs - centre[:, None]
    sig = np.where(dt < 0, sig_l[:, None], sig_r[:, None])
    g = np.exp(-0.5 * (dt / sig) ** 2)
    keep = (idx >= 0) & (idx < n) & (np.abs(dt) <= 4.0 * sig)
    flat_idx = idx[keep]
    gk = g[keep]
    k_of = np.broadcast_to(np.arange(centre.size)[:, None], idx.shape)[keep]
    for a in range(3):
        w = gk * vec[k_of, a]
        out[a] = np.bincount(flat_idx, weights=w, minlength=n)
    return out


def rotation(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """3x3 rotation: roll about Z (frontal-plane axis), yaw about Y (horizontal plane), pitch
    about X."""
    a, b, c = np.radians([roll_deg, yaw_deg, pitch_deg])
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rx = np.array([[1, 0, 0], [0, np.cos(c), -np.sin(c)], [0, np.sin(c), np.cos(c)]])
    return rz @ ry @ rx
