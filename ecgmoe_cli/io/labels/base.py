"""What every label source shares: the `LabelSource` base (hash folds, `.atr` window labels),
a labels.csv stacked on top, and the parsers of ids, ages and sexes the sources all use."""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Any

from ecgmoe_cli.io.labels.atr import Annotations, read_atr, window_targets
from ecgmoe_cli.io.records.record import Record
from ecgmoe_cli.tasks import Task

NAN = float("nan")


def hash_fold(key: str) -> int:
    """Deterministic fold 1-10 from an id (SHA-1, so identical on every machine and run)."""
    digest = hashlib.sha1(str(key).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % 10 + 1


def relative_key(path: str | Path, root: Path) -> str | None:
    """Path of a record relative to `root`, '/'-separated, without extension; None if outside.

    Uses absolute paths without resolving symlinks, so a tree of links still matches.
    """
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    if rel.startswith(".."):
        return None
    return Path(rel).with_suffix("").as_posix()


def parse_age(value: object) -> float:
    """Age in years; NaN for missing, 'NaN', 'Unknown' or outside 0-120 (PTB-XL writes 300 for
    over 89)."""
    try:
        age = float(str(value).strip())
    except ValueError:
        return NAN
    return age if 0 <= age <= 120 else NAN


def parse_female(value: object) -> float:
    """1.0 female, 0.0 male, NaN otherwise; accepts F/Female/W/Woman, M/Male, and 1/0 (PTB-XL)."""
    text = str(value).strip().lower()
    if text in ("f", "female", "w", "woman", "1", "1.0"):
        return 1.0
    if text in ("m", "male", "man", "0", "0.0"):
        return 0.0
    return NAN


class LabelSource:
    """No labels; still gives hash folds and `.atr` window labels. Subclasses add the rest."""

    kind = "none"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tasks: list[Task] = []
        self._atr: tuple[str, Annotations | None] | None = None

    def values_for(self, record: Record) -> dict[str, float]:
        """The target columns this source knows for `record` (subclasses override)."""
        return {}

    def labels_for(self, record: Record) -> dict[str, float]:
        """Every target column of `self.tasks`, NaN where unknown."""
        known = self.values_for(record)
        return {c: float(known.get(c, NAN)) for t in self.tasks for c in t.columns()}

    def fold_for(self, record: Record) -> int:
        return hash_fold(record.name)

    def window_labels(self, record: Record, start_s: float, dur_s: float) -> dict[str, float]:
        """Target overrides for one window from a `.atr` file beside the record (else {})."""
        if self._atr is None or self._atr[0] != record.path:
            self._atr = (record.path, read_atr(record))  # windows of a record come in a row
        ann = self._atr[1]
        return {} if ann is None else window_targets(ann, start_s, dur_s)


class StackedSource(LabelSource):
    """A base source with a labels.csv on top: finite labels.csv values override."""

    def __init__(self, base: LabelSource, top: LabelSource) -> None:
        super().__init__(base.root)
        self.base, self.top = base, top
        self.kind = f"{base.kind}+{top.kind}"
        names = {t.name for t in base.tasks}
        self.tasks = base.tasks + [t for t in top.tasks if t.name not in names]

    def values_for(self, record: Record) -> dict[str, float]:
        out = self.base.values_for(record)
        out.update({k: v for k, v in self.top.values_for(record).items() if not math.isnan(v)})
        return out

    def fold_for(self, record: Record) -> int:
        return self.base.fold_for(record)


class TableSource(LabelSource):
    """A source whose labels are rows of one table (PTB-XL, MIMIC-IV-ECG), found by a record's
    path relative to the root, else by its file name (a tree copied flat still matches)."""

    rows: list[dict[str, Any]]
    by_path: dict[str, int]  # relative path without extension -> row
    by_name: dict[str, int]  # file name (PTB-XL) or study id (MIMIC) -> row

    def row_for(self, record: Record) -> dict[str, Any] | None:
        key = relative_key(record.path, self.root)
        i = self.by_path.get(key) if key is not None else None
        if i is None:
            i = self.by_name.get(Path(record.path).with_suffix("").name,
                                 self.by_name.get(record.name))
        return None if i is None else self.rows[i]
