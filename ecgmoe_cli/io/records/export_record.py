"""What the hospital-export readers (DICOM, HL7 aECG, GE MUSE, Philips) share: the Record they
return, and patient age, sex and acquisition time spelled one way whatever the file wrote."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np

from ecgmoe_cli.io.records.record import Record

_SEX = {"f": "Female", "female": "Female", "w": "Female", "m": "Male", "male": "Male"}
_YEARS_PER = {"y": 1.0, "year": 1.0, "years": 1.0, "m": 1 / 12, "month": 1 / 12,
              "months": 1 / 12, "w": 7 / 365.25, "week": 7 / 365.25, "weeks": 7 / 365.25,
              "d": 1 / 365.25, "day": 1 / 365.25, "days": 1 / 365.25, "h": 1 / 8766,
              "hour": 1 / 8766, "hours": 1 / 8766}
_EXPORT_SUFFIXES = (".xml", ".dcm", ".dicom")


def export_record(path: Path, signal_mv: np.ndarray, fs: float, lead_names: list[str],
                  meta: dict[str, object]) -> Record:
    """A Record from an export; age and sex also become `Age:` / `Sex:` comments, which the
    header label source (`--labels cinc`) reads as targets, as it does for CinC headers."""
    meta = {k: v for k, v in meta.items() if v is not None and not (isinstance(v, str) and not v)}
    comments = []
    if isinstance(meta.get("age"), float):
        comments.append(f"Age: {meta['age']:g}")
    if meta.get("sex"):
        comments.append(f"Sex: {meta['sex']}")
    # DICOM files are often named by UID (1.2.840....320): the whole name is the record's
    name = path.stem if path.suffix.lower() in _EXPORT_SUFFIXES else path.name
    return Record(str(path), name, np.ascontiguousarray(signal_mv, dtype=np.float32), float(fs),
                  list(lead_names), comments, meta)


def sex_word(code: object) -> str | None:
    """'F', 'FEMALE', 'Female' -> 'Female'; 'M', ... -> 'Male'; anything else None."""
    return _SEX.get(str(code or "").strip().lower())


def age_years(value: object, unit: object = "years") -> float | None:
    """An age in years from a number and its unit (DICOM '042Y' carries its own)."""
    text, unit_text = str(value or "").strip(), str(unit or "").strip().lower()
    if text[-1:].isalpha():  # DICOM AS: nnnD/W/M/Y
        text, unit_text = text[:-1], text[-1].lower()
    try:
        age = float(text) * _YEARS_PER[unit_text]
    except (ValueError, KeyError):
        return None
    return round(age, 2) if 0 <= age <= 150 else None


def compact_time(text: object) -> datetime | None:
    """HL7 TS and DICOM DT ('20130125105919.000+0100', any precision down to the day)."""
    digits = str(text or "").strip().split(".")[0].split("+")[0].split("-")[0]
    for fmt in ("%Y%m%d%H%M%S", "%Y%m%d%H%M", "%Y%m%d"):
        try:
            return datetime.strptime(digits, fmt)
        except ValueError:
            continue
    return None


def iso_time(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat()


def years_between(birth: datetime | None, when: datetime | None) -> float | None:
    """Age at acquisition from a birth date (aECG stores no age, only a birth time)."""
    if birth is None or when is None or when < birth:
        return None
    return round((when - birth).days / 365.25, 2)
