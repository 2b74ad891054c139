"""Labels from WFDB header comments: CinC 2020/2021 (`Age:`, `Sex:`, `Dx:` SNOMED-CT codes)
and CPSC 2021 (a last comment naming the record's AF class)."""

from __future__ import annotations

from pathlib import Path

from ecgmoe_cli.io.labels.base import NAN, LabelSource, parse_age, parse_female
from ecgmoe_cli.io.labels.codes import DIAGNOSTIC_TASKS, class_index, codes_to_targets, snomed_table
from ecgmoe_cli.io.records.record import Record
from ecgmoe_cli.tasks import get_task

# CPSC 2021 record classes: persistent AF is AF throughout; paroxysmal is left to the .atr
CPSC_AF = {"non atrial fibrillation": 0.0, "persistent atrial fibrillation": 1.0,
           "paroxysmal atrial fibrillation": NAN}


def _field(comments: list[str], key: str) -> str | None:
    """Value of a `Key: value` comment (case-insensitive key), or None."""
    for line in comments:
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() == key:
            return value.strip()
    return None


def header_values(comments: list[str]) -> dict[str, float]:
    """Target columns told by the comments: diagnoses from Dx, age, sex, CPSC AF class."""
    comments = [c.strip().lstrip("#").strip() for c in comments]
    out: dict[str, float] = {}
    dx = _field(comments, "dx")
    codes = [c.strip() for c in (dx or "").split(",") if c.strip()]
    if codes and not all(c.lower() in ("unknown", "nan") for c in codes):
        out.update(codes_to_targets(codes, snomed_table()))
    age, sex = _field(comments, "age"), _field(comments, "sex")
    if age is not None:
        out["y_age"] = parse_age(age)
    if sex is not None:
        out["y_sex__female"] = parse_female(sex)
    for line in comments:
        if line.lower() in CPSC_AF:
            out["y_rhythm__afib"] = CPSC_AF[line.lower()]
            if CPSC_AF[line.lower()] == 1.0:
                out["y_arrhythmia"] = class_index("afib")
    return out


class HeaderSource(LabelSource):
    """Reads each record's own header comments (Record.comments); folds hash the record name."""

    kind = "cinc"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.tasks = [get_task(n) for n in (*DIAGNOSTIC_TASKS, "age", "sex", "arrhythmia")]

    def values_for(self, record: Record) -> dict[str, float]:
        return header_values(record.comments)
