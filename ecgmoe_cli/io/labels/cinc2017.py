"""Labels from a CinC 2017 AF-challenge tree: `REFERENCE.csv` (`record,label`, no header).

N normal sinus rhythm, A atrial fibrillation, O other rhythm, ~ too noisy to classify. They
become `rhythm` afib (the other rhythm labels unknown), the `arrhythmia` class (sinus, afib,
other) and `noise`; a `~` record says nothing about its rhythm. Folds hash the record name.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.labels.base import NAN, LabelSource
from ecgmoe_cli.io.labels.codes import class_index
from ecgmoe_cli.io.records.record import Record
from ecgmoe_cli.tasks import get_task

REFERENCE = "REFERENCE.csv"
CLASSES = {"N": "sinus", "A": "afib", "O": "other", "~": None}


def reference_targets(label: str) -> dict[str, float]:
    """Target columns for one REFERENCE.csv label."""
    cls = CLASSES[label]
    out = {"y_noise__noisy": float(cls is None)}
    if cls is not None:
        out["y_rhythm__afib"] = float(cls == "afib")
        out["y_arrhythmia"] = class_index(cls)
    return out


class Cinc2017Source(LabelSource):
    """REFERENCE.csv beside the records; a record it does not list gets unknown labels."""

    kind = "cinc2017"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        path = self.root / REFERENCE
        self.labels: dict[str, str] = {}
        try:
            with open(path, newline="", encoding="utf-8") as f:
                for i, row in enumerate(csv.reader(f), 1):
                    if not row or not row[0].strip():
                        continue
                    if len(row) != 2 or row[1].strip() not in CLASSES:
                        raise EcgMoeError(f"line {i} is not `record,label` with a label of "
                                          f"{', '.join(CLASSES)}", path)
                    self.labels[row[0].strip()] = row[1].strip()
        except (OSError, UnicodeDecodeError) as e:
            raise EcgMoeError(f"cannot read: {e}", path) from None
        self.tasks = [get_task(n) for n in ("rhythm", "arrhythmia", "noise")]

    def values_for(self, record: Record) -> dict[str, float]:
        label = self.labels.get(record.name)
        if label is None:
            return {}
        out = {c: NAN for c in get_task("rhythm").columns()}
        return out | reference_targets(label)
