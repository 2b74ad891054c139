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

import itertools
from pathlib import Path

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.labels.base import LabelSource, StackedSource
from ecgmoe_cli.io.labels.cinc import HeaderSource, header_values
from ecgmoe_cli.io.labels.cinc2017 import Cinc2017Source
from ecgmoe_cli.io.labels.csv_file import CsvSource
from ecgmoe_cli.io.labels.mimic import MimicSource
from ecgmoe_cli.io.labels.ptbxl import PtbxlSource
from ecgmoe_cli.tasks import get_task

SOURCE_KINDS = ("auto", "ptbxl", "cinc", "cinc2017", "mimic", "csv", "none")
ATR_TASKS = ("rhythm", "rr_interval", "arrhythmia")  # what window_labels can give


def _has_header_labels(root: Path, limit: int = 50) -> bool:
    """True when one of the first `limit` .hea files under root carries label comments."""
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
        return CsvSource(csv_path, user_kinds)
    source: LabelSource
    if chosen == "ptbxl":
        source = PtbxlSource(root)
    elif chosen == "mimic":
        source = MimicSource(root)
    elif chosen == "cinc":
        source = HeaderSource(root)
    elif chosen == "cinc2017":
        source = Cinc2017Source(root)
    else:
        source = LabelSource(root)
    if chosen in ("cinc", "none") and root.is_dir() and next(root.rglob("*.atr"), None):
        names = {t.name for t in source.tasks}
        source.tasks += [get_task(n) for n in ATR_TASKS if n not in names]
    if kind == "auto" and csv_path.is_file() and chosen != "none":
        return StackedSource(source, CsvSource(csv_path, user_kinds))
    return source
