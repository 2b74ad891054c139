"""Labels from a MIMIC-IV-ECG tree: record_list.csv + machine_measurements.csv.

Rhythm labels and the arrhythmia class come from the machine report lines (report_0..17)
by the phrase rules of data/mimic_phrases.csv (lower-cased text, regular expressions; a
rhythm label is 0 when a report exists and no phrase names it). rr_interval is the machine's
value in ms (kept when 200-3000). Age and sex need MIMIC-IV's patients.csv(.gz) in the root
or root/hosp: age = anchor_age + (year of the ECG - anchor_year). Folds hash subject_id, so
one patient's ECGs never straddle train and test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.labels.base import (
    NAN,
    TableSource,
    hash_fold,
    parse_age,
    parse_female,
)
from ecgmoe_cli.io.labels.codes import report_to_targets
from ecgmoe_cli.io.records.record import Record
from ecgmoe_cli.tasks import get_task

REPORT_COLUMNS = [f"report_{i}" for i in range(18)]


def _read(path: Path, **kw: Any) -> Any:
    import pandas as pd

    try:
        return pd.read_csv(path, low_memory=False, **kw)
    except (OSError, ValueError) as e:
        raise EcgMoeError(f"cannot read: {e}", path) from None


def _patients(root: Path) -> Any:
    for p in (root / "patients.csv", root / "patients.csv.gz", root / "hosp" / "patients.csv",
              root / "hosp" / "patients.csv.gz"):
        if p.is_file():
            return _read(p, usecols=["subject_id", "gender", "anchor_age", "anchor_year"])
    return None


class MimicSource(TableSource):
    """MIMIC-IV-ECG: one row per study; records matched by `path`, else by study id."""

    kind = "mimic"

    def __init__(self, root: Path) -> None:
        import pandas as pd

        super().__init__(root)
        records = _read(self.root / "record_list.csv")
        need = {"subject_id", "study_id", "path"} - set(records.columns)
        if need:
            raise EcgMoeError(f"missing columns {sorted(need)}", self.root / "record_list.csv")
        mm_path = self.root / "machine_measurements.csv"
        header = list(_read(mm_path, nrows=0).columns)
        cols = ["study_id"] + [c for c in (*REPORT_COLUMNS, "rr_interval") if c in header]
        if "study_id" not in header:
            raise EcgMoeError("missing column study_id", mm_path)
        mm = _read(mm_path, usecols=cols, dtype={c: str for c in REPORT_COLUMNS if c in cols})
        table = records.merge(mm, on="study_id", how="left")
        patients = _patients(self.root)
        if patients is not None:
            table = table.merge(patients, on="subject_id", how="left")
            if "ecg_time" in table.columns:
                year = pd.to_datetime(table["ecg_time"], errors="coerce").dt.year
                table["age"] = table["anchor_age"] + (year - table["anchor_year"])
            else:
                table["age"] = table["anchor_age"]
        self.report_cols = [c for c in REPORT_COLUMNS if c in table.columns]
        self.rows: list[dict[str, Any]] = table.to_dict("records")
        self.by_path = {str(r["path"]).strip("/"): i for i, r in enumerate(self.rows)}
        self.by_name = {str(r["study_id"]): i for i, r in enumerate(self.rows)}
        names = ["rhythm", "arrhythmia", "rr_interval"]
        names += ["age", "sex"] if patients is not None else []
        self.tasks = [get_task(n) for n in names]

    def values_for(self, record: Record) -> dict[str, float]:
        row = self.row_for(record)
        if row is None:
            return {}
        text = " ; ".join(str(row[c]) for c in self.report_cols if isinstance(row[c], str))
        out = report_to_targets(text)
        rr = row.get("rr_interval")
        plausible = isinstance(rr, (int, float)) and 200 <= rr <= 3000
        out["y_rr_interval"] = float(rr) if plausible else NAN
        if "gender" in row:
            out["y_age"] = parse_age(row["age"])
            out["y_sex__female"] = parse_female(row["gender"])
        return out

    def fold_for(self, record: Record) -> int:
        row = self.row_for(record)
        return hash_fold(str(row["subject_id"]) if row is not None else record.name)
