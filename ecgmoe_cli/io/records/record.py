"""The Record: what a reader returns, before any processing; and the sampling rates a record
(or an --fs option) may have."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ecgmoe_cli.errors import EcgMoeError

MAX_FS = 100_000.0
MIN_FS = 10.0  # below this a "rate" stretches 2,500 samples over hours (--fs 0.001 hung predict)


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


def plausible_fs(fs: float) -> bool:
    """A sampling rate an ECG can have: finite, in [MIN_FS, 100 kHz]."""
    return bool(np.isfinite(fs)) and MIN_FS <= fs <= MAX_FS


def check_fs_option(fs: float | None) -> None:
    """--fs refused before any work (not once per record, after the records are listed)."""
    if fs is not None and not plausible_fs(fs):
        raise EcgMoeError(f"--fs {fs} Hz is not a plausible ECG sampling rate (use "
                          f"{MIN_FS:g}-{MAX_FS:g} Hz)")
