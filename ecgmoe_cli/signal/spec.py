"""PreprocessSpec: every preprocessing setting in one frozen dataclass, saved with the weights.

Prediction reads the spec from the weights, so training and inference can never disagree.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.signal.leads import CANONICAL_LEADS

SPEC_VERSION = 1
# field -> (lowest, highest): beyond these a spec (read from weights anyone may hand over) is a
# mistake or an attack (window_s 1e12 made every record a MemoryError; clip_mv NaN masked all)
_RANGES: dict[str, tuple[float, float]] = {
    "window_s": (1.0, 120.0), "stride_s": (0.1, 120.0), "min_tail_s": (0.0, 120.0),
    "filter_order": (1, 8), "nan_interp_max_s": (0.0, 60.0), "nan_mask_frac": (0.0, 1.0),
    "flat_std_mv": (0.0, 10.0), "saturation_frac": (0.0, 1.0), "clip_mv": (0.1, 1000.0),
    "max_beats": (1, 1024), "beat_pre_s": (0.0, 2.0), "beat_post_s": (0.01, 2.0),
}
_INTEGERS = {"filter_order", "max_beats", "version"}


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
        problems = _type_problems(self)
        if problems:  # ranges compare numbers only
            raise EcgMoeError("invalid preprocessing spec: " + "; ".join(problems))
        if not 50 <= self.fs <= 2000:
            problems.append(f"fs must be in [50, 2000] Hz, got {self.fs}")
        for name, (lo_, hi_) in _RANGES.items():
            if not lo_ <= getattr(self, name) <= hi_:  # NaN fails too
                problems.append(f"{name} must be in [{lo_:g}, {hi_:g}], got {getattr(self, name)}")
        lo, hi = self.bandpass_hz
        if not 0 <= lo < hi < self.fs / 2:
            problems.append(f"bandpass_hz must satisfy 0 <= lo < hi < fs/2, got {self.bandpass_hz}")
        bad = [lead for lead in self.leads if lead not in CANONICAL_LEADS]
        if bad or not self.leads or len(set(self.leads)) != len(self.leads):
            problems.append(f"leads must be distinct names among {', '.join(CANONICAL_LEADS)}, "
                            f"got {list(self.leads)[:14]}")
        if self.version != SPEC_VERSION:
            problems.append(f"version must be {SPEC_VERSION}, got {self.version}")
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


def _type_problems(spec: PreprocessSpec) -> list[str]:
    """Fields of the wrong type (a string, a bool, an infinite number, a list of the wrong
    length), said before any range is compared."""
    problems = []
    for f in dataclasses.fields(spec):
        v = getattr(spec, f.name)
        if f.name == "leads":
            ok = isinstance(v, tuple) and all(isinstance(x, str) for x in v)
        elif f.name == "bandpass_hz":
            ok = (isinstance(v, tuple) and len(v) == 2 and all(_number(x) for x in v))
        elif f.name in _INTEGERS:
            ok = isinstance(v, int) and not isinstance(v, bool)
        else:
            ok = _number(v)
        if not ok:
            problems.append(f"{f.name} has the wrong type or is not finite: {str(v)[:40]!r}")
    return problems


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
