"""Labels from a user's labels.csv: first column `record`, then task columns.

A column is a task (`age`, `potassium`, `my_score`: the value) or `<task>__<label>` (0/1).
Optional `fold` (1-10) and `patient_id` columns set the fold. Columns that are not built-in
tasks become user tasks; their kind is given by the caller or inferred from the values
(0/1 -> binary, numbers -> regression, anything else -> multiclass over the sorted values).
A built-in `potassium` column holding serum values (mmol/L) instead of 0/1 is turned into
abnormal = outside 3.5-5.0 mmol/L.
"""

from __future__ import annotations

import math
from pathlib import Path

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.labels.base import NAN, LabelSource, hash_fold, parse_female, relative_key
from ecgmoe_cli.io.records.record import Record
from ecgmoe_cli.tasks import TASKS, Task, user_task

RECORD_EXTS = {".hea", ".dat", ".mat", ".edf", ".bdf", ".csv", ".npy", ".xml", ".dcm"}
MISSING = {"", "nan", "na", "n/a", "none", "null", "unknown", "?"}
TRUE = {"1", "1.0", "true", "yes", "y"}
FALSE = {"0", "0.0", "false", "no", "n"}
POTASSIUM_NORMAL_MMOL = (3.5, 5.0)


def _key(text: str) -> str:
    p = Path(text.strip().replace("\\", "/"))
    return (p.with_suffix("") if p.suffix.lower() in RECORD_EXTS else p).as_posix()


def _num(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return NAN


class CsvSource(LabelSource):
    """One row per record; `record` is a record name or a path relative to the csv's folder."""

    kind = "csv"

    def __init__(self, path: Path, user_kinds: dict[str, str] | None = None) -> None:
        import pandas as pd

        super().__init__(Path(path).parent)
        self.path = Path(path)
        if not self.path.is_file():
            raise EcgMoeError("labels file not found", self.path)
        try:
            df = pd.read_csv(self.path, dtype=str, keep_default_na=False)
        except (OSError, ValueError) as e:
            raise EcgMoeError(f"cannot read labels: {e}", self.path) from None
        if not len(df.columns) or df.columns[0].strip().lower() != "record":
            raise EcgMoeError("the first column must be `record`", self.path)
        df.columns = [c.strip() for c in df.columns]
        cells = {c: [v.strip() for v in df[c]] for c in df.columns}
        records = cells.pop(df.columns[0])
        self._refuse_conflicts(records, cells)
        self.fold_col = cells.pop("fold", None)
        self.patient_col = cells.pop("patient_id", None)
        self.index: dict[str, int] = {}
        for i, rec in enumerate(records):
            self.index.setdefault(_key(rec), i)
            self.index.setdefault(Path(_key(rec)).name, i)
        self.columns: dict[str, list[float]] = {}
        groups: dict[str, list[str]] = {}
        for col in cells:
            groups.setdefault(col.split("__", 1)[0].lower(), []).append(col)
        kinds = {k.lower(): v for k, v in (user_kinds or {}).items()}
        self.tasks = [self._add_task(name, cols, cells, kinds.get(name))
                      for name, cols in groups.items()]

    def _refuse_conflicts(self, records: list[str], cells: dict[str, list[str]]) -> None:
        """Two rows for one record must say the same (a repeat is harmless); rows that
        disagree are refused naming the record, rather than the first silently winning."""
        first: dict[str, int] = {}
        for i, rec in enumerate(records):
            j = first.setdefault(_key(rec), i)
            if j == i:
                continue
            diff = [c for c in cells if cells[c][i] != cells[c][j]]
            if diff:
                c = diff[0]
                raise EcgMoeError(f"record {rec!r} has rows that disagree (lines {j + 2} and "
                                  f"{i + 2}: {c} {cells[c][j]!r} vs {cells[c][i]!r}); keep "
                                  "one row per record", self.path)

    def _bad(self, col: str, why: str) -> EcgMoeError:
        return EcgMoeError(f"column {col!r}: {why}", self.path)

    def _flags(self, col: str, values: list[str]) -> list[float]:
        out = []
        for v in values:
            low = v.lower()
            if low not in MISSING | TRUE | FALSE:
                raise self._bad(col, f"{v!r} is not 0/1")
            out.append(1.0 if low in TRUE else 0.0 if low in FALSE else NAN)
        return out

    def _numbers(self, col: str, values: list[str]) -> list[float]:
        nums = [NAN if v.lower() in MISSING else _num(v) for v in values]
        bad = [v for v, x in zip(values, nums) if v.lower() not in MISSING and math.isnan(x)]
        if bad:
            raise self._bad(col, f"{bad[0]!r} is not a number")
        return nums

    def _add_task(self, name: str, cols: list[str], cells: dict[str, list[str]],
                  kind: str | None) -> Task:
        labelled = [c for c in cols if "__" in c]
        plain = [c for c in cols if "__" not in c]
        if labelled and plain:
            raise self._bad(plain[0], f"mixes a {name!r} column with {name}__<label> columns")
        task = TASKS.get(name)
        if task is not None and kind is not None and kind != task.kind:
            raise self._bad(cols[0], f"{name!r} is built in as {task.kind}, not {kind}")
        if labelled:
            labels = [c.split("__", 1)[1].lower() for c in labelled]
            if task is None:
                kind = kind or ("binary" if len(labels) == 1 else "multilabel")
                task = user_task(name, kind, tuple(labels))
            for col, label in zip(labelled, labels):
                if label not in task.labels:
                    raise self._bad(col, f"{name!r} has no label {label!r} "
                                         f"({', '.join(task.labels)})")
                self.columns[f"y_{name}__{label}"] = self._flags(col, cells[col])
            return task
        col = plain[0]
        values = cells[col]
        present = [v for v in values if v.lower() not in MISSING]
        if task is None:
            numeric = all(math.isfinite(_num(v)) for v in present)
            if kind is None:
                kind = ("binary" if all(v.lower() in TRUE | FALSE for v in present) else
                        "regression" if numeric else "multiclass")
            classes = sorted(set(present)) if kind == "multiclass" else ()
            task = user_task(name, kind, classes)
        self.columns.update(self._parse(task, col, values))
        return task

    def _parse(self, task: Task, col: str, values: list[str]) -> dict[str, list[float]]:
        """Plain-column values -> the task's target column(s)."""
        if task.kind == "multilabel":
            raise self._bad(col, f"{task.name!r} is multilabel: use {task.name}__<label> columns")
        if task.kind == "regression":
            return {task.columns()[0]: self._numbers(col, values)}
        if task.kind == "multiclass":
            out = []
            for v in values:
                if v.lower() in MISSING:
                    out.append(NAN)
                elif v in task.labels:
                    out.append(float(task.labels.index(v)))
                elif v.isdigit() and int(v) < len(task.labels):
                    out.append(float(v))
                else:
                    raise self._bad(col, f"{v!r} is not one of {', '.join(task.labels)}")
            return {task.columns()[0]: out}
        if task.name == "sex":
            return {task.columns()[0]: [parse_female(v) if v.lower() not in MISSING else NAN
                                        for v in values]}
        flags = MISSING | TRUE | FALSE
        if task.name == "potassium" and any(v.lower() not in flags for v in values):
            lo, hi = POTASSIUM_NORMAL_MMOL
            mmol = self._numbers(col, values)
            return {task.columns()[0]: [NAN if math.isnan(k) else float(not lo <= k <= hi)
                                        for k in mmol]}
        return {task.columns()[0]: self._flags(col, values)}

    def row_for(self, record: Record) -> int | None:
        key = relative_key(record.path, self.root)
        i = self.index.get(key) if key is not None else None
        if i is None:
            i = self.index.get(Path(record.path).with_suffix("").name, self.index.get(record.name))
        return i

    def values_for(self, record: Record) -> dict[str, float]:
        i = self.row_for(record)
        return {} if i is None else {c: v[i] for c, v in self.columns.items()}

    def fold_for(self, record: Record) -> int:
        i = self.row_for(record)
        if i is None:
            return hash_fold(record.name)
        if self.fold_col is not None and self.fold_col[i]:
            fold = _num(self.fold_col[i])
            if not (1 <= fold <= 10 and fold == int(fold)):
                raise self._bad("fold", f"{self.fold_col[i]!r} is not a fold 1-10")
            return int(fold)
        if self.patient_col is not None and self.patient_col[i]:
            return hash_fold(self.patient_col[i])
        return hash_fold(record.name)
