"""Labels from a PTB-XL-shaped tree: ptbxl_database.csv rows matched by filename_lr/hr.

Every SCP code listed counts, whatever its likelihood (PTB-XL writes 0 for "unknown
likelihood", e.g. ecg_id 1's 'SR': 0.0), as in the PTB-XL benchmark; `superclass` holds its
five superdiagnostic classes (NORM, MI, STTC, CD, HYP), unknown for a record with only form or
rhythm statements. Optional synthetic columns (rr_interval, potassium,
arrhythmia) are read when present; a record missing from the database gets NaN labels.
"""

from __future__ import annotations

import ast
import math
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
from ecgmoe_cli.io.labels.codes import (
    DIAGNOSTIC_TASKS,
    codes_to_targets,
    scp_table,
    superclass_targets,
)
from ecgmoe_cli.io.records.record import Record
from ecgmoe_cli.tasks import ARRHYTHMIA_CLASSES, get_task

OPTIONAL_TASKS = ("rr_interval", "potassium")


def parse_scp_codes(text: object, path: Path) -> list[str]:
    """Keys of a PTB-XL scp_codes dict string (parsed as a literal, never evaluated)."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return []
    try:
        codes = ast.literal_eval(str(text))
    except (ValueError, SyntaxError):
        raise EcgMoeError(f"scp_codes {str(text)[:60]!r} is not a dict", path) from None
    if not isinstance(codes, dict):
        raise EcgMoeError(f"scp_codes {str(text)[:60]!r} is not a dict", path)
    return [str(c) for c in codes]


def _number(value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return NAN
    return x


class PtbxlSource(TableSource):
    """PTB-XL database: diagnoses from scp_codes, age, sex (1 = female), strat_fold."""

    kind = "ptbxl"

    def __init__(self, root: Path) -> None:
        import pandas as pd

        super().__init__(root)
        self.db_path = self.root / "ptbxl_database.csv"
        try:
            db = pd.read_csv(self.db_path)
        except (OSError, ValueError) as e:
            raise EcgMoeError(f"cannot read PTB-XL database: {e}", self.db_path) from None
        missing = {"scp_codes", "filename_lr"} - set(db.columns)
        if missing:
            raise EcgMoeError(f"missing columns {sorted(missing)}", self.db_path)
        self.rows: list[dict[str, Any]] = db.to_dict("records")
        self.by_path: dict[str, int] = {}
        self.by_name: dict[str, int] = {}
        for i, row in enumerate(self.rows):
            for col in ("filename_lr", "filename_hr"):
                value = row.get(col)
                if isinstance(value, str) and value:
                    has_suffix = "." in Path(value).name
                    key = Path(value).with_suffix("").as_posix() if has_suffix else value
                    self.by_path[key] = i
                    self.by_name[Path(key).name] = i
        names = [*DIAGNOSTIC_TASKS, "superclass", "age", "sex", "arrhythmia"]
        names += [n for n in OPTIONAL_TASKS if n in db.columns]
        self.tasks = [get_task(n) for n in names]

    def values_for(self, record: Record) -> dict[str, float]:
        row = self.row_for(record)
        if row is None:
            return {}
        codes = parse_scp_codes(row["scp_codes"], self.db_path)
        out = codes_to_targets(codes, scp_table()) | superclass_targets(codes, scp_table())
        out["y_age"] = parse_age(row.get("age"))
        out["y_sex__female"] = parse_female(_number(row.get("sex")))
        rr = _number(row.get("rr_interval"))
        out["y_rr_interval"] = rr if rr > 0 else NAN
        k = _number(row.get("potassium"))
        out["y_potassium__abnormal"] = k if k in (0.0, 1.0) else NAN
        cls = row.get("arrhythmia")
        if isinstance(cls, str) and cls.strip():
            if cls.strip() not in ARRHYTHMIA_CLASSES:
                raise EcgMoeError(f"arrhythmia {cls!r} is not one of "
                                  f"{', '.join(ARRHYTHMIA_CLASSES)}", self.db_path)
            out["y_arrhythmia"] = float(ARRHYTHMIA_CLASSES.index(cls.strip()))
        return out

    def fold_for(self, record: Record) -> int:
        """strat_fold when the row has one, else a hash of patient_id (or the record name)."""
        row = self.row_for(record)
        if row is None:
            return hash_fold(record.name)
        fold = _number(row.get("strat_fold"))
        if 1 <= fold <= 10 and fold == int(fold):
            return int(fold)
        patient = _number(row.get("patient_id"))
        return hash_fold(str(int(patient)) if math.isfinite(patient) else record.name)
