"""Label sources: where a record's task targets and its fold come from.

`open_label_source(root)` picks the source from the files in `root` (PTB-XL tree, MIMIC-IV-ECG
tree, labels.csv, CinC/CPSC headers, or none). Every source gives
- `labels_for(record)`: one float per target column of `source.tasks` (NaN = unknown);
- `fold_for(record)`: 1-10, stable across machines (a SHA-1 of the patient or record id
  where the source has no fold of its own);
- `window_labels(record, start_s, dur_s)`: overrides for one window of a long record from a
  `.atr` file beside it (mean RR, rhythm); empty without one.
A labels.csv beside a PTB-XL or MIMIC tree is stacked on top: its known values win. A tree
with `.atr` files also offers the tasks those windows label (rr_interval, rhythm, arrhythmia).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
from pathlib import Path

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.labels_atr import Annotations, read_atr, window_targets
from ecgmoe_cli.io.record import Record
from ecgmoe_cli.tasks import Task, get_task

SOURCE_KINDS = ("auto", "ptbxl", "cinc", "cinc2017", "mimic", "csv", "none")
NAN = float("nan")
ATR_TASKS = ("rhythm", "rr_interval", "arrhythmia")  # what window_labels can give


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
    """Age in years, NaN for missing, 'NaN', 'Unknown' or outside 0-120 (PTB-XL writes 300 for >89)."""
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


def _has_header_labels(root: Path, limit: int = 50) -> bool:
    """True when one of the first `limit` .hea files under root carries label comments."""
    from ecgmoe_cli.io.labels_cinc import header_values

    for hea in itertools.islice(root.rglob("*.hea"), limit):
        comments = [ln.lstrip("#").strip() for ln in _read_text(hea).splitlines()
                    if ln.startswith("#")]
        if header_values(comments):
            return True
    return False


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise EcgMoeError(f"cannot read: {e.strerror}", path) from None


def detect_kind(root: Path) -> str:
    """auto: PTB-XL database, then MIMIC-IV-ECG lists, then labels.csv, then CinC 2017's
    REFERENCE.csv, then header comments, else none."""
    if root.is_file():
        return "csv" if root.suffix.lower() == ".csv" else "none"
    if (root / "ptbxl_database.csv").is_file():
        return "ptbxl"
    if (root / "record_list.csv").is_file() and (root / "machine_measurements.csv").is_file():
        return "mimic"
    if (root / "labels.csv").is_file():
        return "csv"
    if (root / "REFERENCE.csv").is_file():
        return "cinc2017"
    return "cinc" if _has_header_labels(root) else "none"


def open_label_source(root: Path, kind: str = "auto", *,
                      user_kinds: dict[str, str] | None = None) -> LabelSource:
    """The label source of a folder (or of a labels.csv file); `user_kinds` fixes the kind of
    labels.csv columns that are not built-in tasks (else inferred from their values)."""
    root = Path(root)
    if kind not in SOURCE_KINDS:
        raise EcgMoeError(f"unknown label source {kind!r}; choose one of {', '.join(SOURCE_KINDS)}")
    if not root.exists():
        raise EcgMoeError("no such folder or file", root)
    chosen = detect_kind(root) if kind == "auto" else kind
    csv_path = root if root.is_file() else root / "labels.csv"
    if chosen == "csv":
        from ecgmoe_cli.io.labels_csv import CsvSource

        return CsvSource(csv_path, user_kinds)
    source: LabelSource
    if chosen == "ptbxl":
        from ecgmoe_cli.io.labels_ptbxl import PtbxlSource

        source = PtbxlSource(root)
    elif chosen == "mimic":
        from ecgmoe_cli.io.labels_mimic import MimicSource

        source = MimicSource(root)
    elif chosen == "cinc":
        from ecgmoe_cli.io.labels_cinc import HeaderSource

        source = HeaderSource(root)
    elif chosen == "cinc2017":
        from ecgmoe_cli.io.labels_cinc2017 import Cinc2017Source

        source = Cinc2017Source(root)
    else:
        source = LabelSource(root)
    if chosen in ("cinc", "none") and root.is_dir() and next(root.rglob("*.atr"), None):
        names = {t.name for t in source.tasks}
        source.tasks += [get_task(n) for n in ATR_TASKS if n not in names]
    if kind == "auto" and csv_path.is_file() and chosen != "none":
        from ecgmoe_cli.io.labels_csv import CsvSource

        return StackedSource(source, CsvSource(csv_path, user_kinds))
    return source
