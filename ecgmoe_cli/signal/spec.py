"""PreprocessSpec: every preprocessing setting in one frozen dataclass, saved with the weights.

Prediction reads the spec from the weights, so training and inference can never disagree.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.signal.leads import CANONICAL_LEADS

SPEC_VERSION = 1


@dataclass(frozen=True)
class PreprocessSpec:
    """Settings that turn a Record into model-ready 10 s windows and beats."""

    fs: float = 250.0  # model sampling rate, Hz; every record is resampled to it
    window_s: float = 10.0  # the model sees windows of this length
    stride_s: float = 10.0  # step between windows of a long record
    min_tail_s: float = 5.0  # a long record's last partial window is kept only if this long
    bandpass_hz: tuple[float, float] = (0.5, 45.0)  # removes baseline wander and mains hum
    filter_order: int = 2  # Butterworth order per direction (zero-phase: doubled)
    nan_interp_max_s: float = 0.25  # NaN runs up to this long are interpolated
    nan_mask_frac: float = 0.2  # a lead whose window is more NaN than this is masked
    flat_std_mv: float = 0.005  # a lead quieter than this (std, mV) is masked as flat
    saturation_frac: float = 0.2  # a lead stuck at its extreme value this often is masked
    clip_mv: float = 10.0  # amplitudes are clipped to +-clip_mv after filtering
    max_beats: int = 32  # K: beats per window, padded with a mask (32 covers 190 bpm)
    beat_pre_s: float = 0.25  # beat window starts this long before the R-peak
    beat_post_s: float = 0.45  # and ends this long after it
    leads: tuple[str, ...] = CANONICAL_LEADS
    version: int = SPEC_VERSION

    def __post_init__(self) -> None:
        problems = []
        if not 50 <= self.fs <= 2000:
            problems.append(f"fs must be in [50, 2000] Hz, got {self.fs}")
        if self.window_s <= 0 or self.stride_s <= 0:
            problems.append("window_s and stride_s must be positive")
        lo, hi = self.bandpass_hz
        if not 0 <= lo < hi < self.fs / 2:
            problems.append(f"bandpass_hz must satisfy 0 <= lo < hi < fs/2, got {self.bandpass_hz}")
        if self.max_beats < 1:
            problems.append("max_beats must be >= 1")
        if problems:
            raise EcgMoeError("invalid preprocessing spec: " + "; ".join(problems))

    @property
    def window_samples(self) -> int:
        return int(round(self.window_s * self.fs))

    @property
    def beat_pre(self) -> int:
        return int(round(self.beat_pre_s * self.fs))

    @property
    def beat_samples(self) -> int:
        return self.beat_pre + int(round(self.beat_post_s * self.fs))

    def to_dict(self) -> dict[str, object]:
        d = dataclasses.asdict(self)
        d["bandpass_hz"] = list(self.bandpass_hz)
        d["leads"] = list(self.leads)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> PreprocessSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise EcgMoeError(f"preprocessing spec has unknown fields {unknown}")
        kw = dict(d)
        if "bandpass_hz" in kw:
            kw["bandpass_hz"] = tuple(kw["bandpass_hz"])  # type: ignore[arg-type]
        if "leads" in kw:
            kw["leads"] = tuple(kw["leads"])  # type: ignore[arg-type]
        return cls(**kw)  # type: ignore[arg-type]

    @classmethod
    def from_json(cls, text: str) -> PreprocessSpec:
        return cls.from_dict(json.loads(text))

    def hash(self) -> str:
        """Short stable digest: equal specs give equal hashes across runs and machines."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]
