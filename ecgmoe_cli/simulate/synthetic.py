"""One synthetic record from (seed, index): diagnosis -> heart -> beats -> signal -> database row.

Each record has its own generator seeded by (seed, index), so a corpus is the same whatever
the number of worker processes or the order they finish in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ecgmoe_cli.simulate.artefacts import add_artefacts
from ecgmoe_cli.simulate.diagnosis import Diagnosis, draw_diagnosis
from ecgmoe_cli.simulate.heart import Heart, normal_heart, place_t, qt_now
from ecgmoe_cli.simulate.pathology import apply
from ecgmoe_cli.simulate.rhythm import schedule
from ecgmoe_cli.simulate.showcase import showcase_diagnosis
from ecgmoe_cli.simulate.waveform import Truth, render


@dataclass
class Synthetic:
    """A rendered record: the clean and the recorded signal (12, n) in mV, and what it shows."""

    clean: np.ndarray
    signal: np.ndarray
    truth: Truth
    heart: Heart
    dx: Diagnosis


def make_heart(dx: Diagnosis, rng: np.random.Generator) -> Heart:
    """A patient's heart showing every finding of `dx`."""
    h = normal_heart(rng, float(dx.age), dx.female)
    apply(h, dx, rng)
    place_t(h.qrs, qt_now(h))
    return h


def synthesize(seed: int, index: int, fs: float = 500.0, duration: float = 10.0,
               dx: Diagnosis | None = None, showcase: bool = False) -> Synthetic:
    """Record `index` of the corpus `seed`, or of its showcase, or showing the given diagnosis."""
    rng = np.random.default_rng([seed, index])
    drawn = draw_diagnosis(rng)
    if dx is None:
        dx = showcase_diagnosis(index, drawn) if showcase else drawn
    h = make_heart(dx, rng)
    s = schedule(h, rng, duration)
    n = round(duration * fs)
    clean, truth = render(h, s, n, fs, rng)
    return Synthetic(clean, add_artefacts(clean, fs, rng), truth, h, dx)


def database_row(syn: Synthetic, ecg_id: int, fold: int, seed: int, filename: str
                 ) -> dict[str, Any]:
    """The ptbxl_database.csv row of a record (PTB-XL columns plus the synthetic ones)."""
    dx = syn.dx
    return {
        "ecg_id": ecg_id,
        "patient_id": ecg_id,
        "age": dx.age,
        "sex": int(dx.female),
        "scp_codes": repr(dx.scp_codes()),
        "strat_fold": fold,
        "filename_lr": filename,
        "filename_hr": filename,
        "rr_interval": round(syn.truth.rr_ms, 1),
        "potassium": int(bool(dx.potassium)),
        "arrhythmia": dx.arrhythmia(),
        "note": f"synthetic (ecgmoe simulate, seed {seed}"
                + (f", potassium {dx.potassium}" if dx.potassium else "") + ")",
    }
