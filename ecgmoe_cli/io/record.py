"""The Record: what a reader returns, before any processing."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Record:
    """One recording as stored: signal in mV, lead names exactly as written in the file."""

    path: str  # the file a user would name (the .hea, .edf, .csv or .npy)
    name: str  # record name (file stem), unique within its folder
    signal: np.ndarray  # (leads, n) float32, mV; NaN where the file has no sample
    fs: float  # sampling rate of `signal`, Hz
    lead_names: list[str]  # as written in the file, one per row of `signal`
    comments: list[str] = field(default_factory=list)  # header comment lines, '#' stripped
    meta: dict[str, object] = field(default_factory=dict)  # units, base date, format, ...

    @property
    def duration_s(self) -> float:
        return self.signal.shape[1] / self.fs if self.fs > 0 else 0.0
