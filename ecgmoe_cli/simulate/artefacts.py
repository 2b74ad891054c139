"""Recording artefacts added to the clean 12-lead signal: what real resting ECGs carry.

Baseline wander (breathing, movement), powerline hum, muscle (EMG) noise, electrode motion
transients, a gain error, and now and then a flat (disconnected) lead. Limb-lead artefacts are
made on the three electrodes (RA, LA, LL) so that Einthoven's law still holds, as it does in
a real recording.
"""

from __future__ import annotations

import numpy as np

from ecgmoe_cli.simulate.dipole import LEADS

P_FLAT_LEAD = 0.02


def _electrodes_to_leads(e: np.ndarray) -> np.ndarray:
    """(9, n) electrode potentials RA, LA, LL, V1..V6 -> (12, n) leads (Wilson terminal)."""
    ra, la, ll = e[0], e[1], e[2]
    wct = (ra + la + ll) / 3.0
    limb = np.stack([la - ra, ll - ra, ll - la, ra - (la + ll) / 2, la - (ra + ll) / 2,
                     ll - (ra + la) / 2])
    return np.concatenate([limb, e[3:] - wct])


def _smooth_noise(rng: np.random.Generator, k: int, n: int, fs: float, lo: float, hi: float
                  ) -> np.ndarray:
    """(k, n) unit-variance noise band-limited to lo-hi Hz (shaped in the frequency domain)."""
    spec = rng.normal(size=(k, n // 2 + 1)) + 1j * rng.normal(size=(k, n // 2 + 1))
    f = np.fft.rfftfreq(n, 1.0 / fs)
    spec[:, (f < lo) | (f > hi)] = 0.0
    x = np.fft.irfft(spec, n=n)
    return x / np.maximum(x.std(axis=1, keepdims=True), 1e-12)


def add_artefacts(sig: np.ndarray, fs: float, rng: np.random.Generator) -> np.ndarray:
    """A noisy copy of the (12, n) clean signal in mV; every record gets a different mix."""
    n = sig.shape[1]
    t = np.arange(n) / fs
    e = np.zeros((9, n))
    # Baseline wander: breathing (0.15-0.4 Hz) plus slow drift, per electrode.
    wander = rng.uniform(0.005, 0.06)
    e += wander * _smooth_noise(rng, 9, n, fs, 0.05, 0.5) * rng.uniform(0.3, 1.0, (9, 1))
    # Muscle noise: broadband 20-150 Hz, stronger on the limb electrodes.
    emg = rng.uniform(0.003, 0.03) * (rng.random() < 0.7)
    hi = min(150.0, fs / 2 - 1)
    gain = np.r_[np.full(3, 1.5), np.ones(6)][:, None] * rng.uniform(0.2, 1.0, (9, 1))
    e += emg * gain * _smooth_noise(rng, 9, n, fs, 20.0, hi)
    # Electrode motion: one electrode now and then jumps and recovers (a slow step transient).
    if rng.random() < 0.15:
        j = int(rng.integers(0, 9))
        t0 = rng.uniform(0.5, n / fs - 0.5)
        step = np.where(t >= t0, np.exp(-(t - t0) / rng.uniform(0.2, 0.8)), 0.0)
        e[j] += rng.uniform(-0.6, 0.6) * step
    out = sig + _electrodes_to_leads(e)
    # Powerline hum (50 or 60 Hz) picked up by the leads, with a phase per lead.
    if rng.random() < 0.5 and fs > 130:
        f0 = 50.0 if rng.random() < 0.6 else 60.0
        amp = rng.uniform(0.005, 0.05) * rng.uniform(0.3, 1.0, (12, 1))
        out += amp * np.sin(2 * np.pi * f0 * t[None, :] + rng.uniform(0, 2 * np.pi, (12, 1)))
    out *= rng.uniform(0.95, 1.05)  # gain calibration error (small: voltage criteria still hold)
    if rng.random() < P_FLAT_LEAD:
        out[int(rng.integers(0, len(LEADS)))] = 0.0
    return out
