"""Predictions for the header, read from an `ecgmoe predict` report row.

Report columns (README): `<task>_pred` (labels over threshold: "afib,tachy" or a list) with
`<task>_<label>_prob`; multiclass `<task>_class` + `<task>_prob`; regression `<task>_<unit>`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ecgmoe_cli.pipeline.predict.schema import pred_labels, regression_column
from ecgmoe_cli.tasks import TASKS, TRAIT_VALUES, is_finding


def _num(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def prediction_lines(row: dict[str, Any]) -> list[str]:
    """One line per task that says something: flagged labels with probabilities, the class,
    the regressed values, a trait's value in words (`sex: male`, never an empty cell); tasks
    with nothing over threshold are summed up as 'no findings'."""
    lines, quiet = [], []
    for col in sorted(c for c in row if c.endswith("_pred")):
        task = col[: -len("_pred")]
        labels = pred_labels(row[col])
        if task in TRAIT_VALUES:
            negative, positive = TRAIT_VALUES[task]
            p = _num(row.get(f"{task}_{positive}_prob"))
            word = positive if positive in labels else negative
            lines.append(f"{task}: {word}" + (f" (p {positive} {p:.2f})" if p is not None
                                               else ""))
            continue
        if not labels:
            quiet.append(task)
            continue
        parts = []
        for label in labels:
            p = _num(row.get(f"{task}_{label}_prob"))
            parts.append(f"{label} {p:.2f}" if p is not None else label)
        lines.append(f"{task}: {', '.join(parts)}")
    for col in sorted(c for c in row if c.endswith("_class")):
        task = col[: -len("_class")]
        if row[col] is None or row[col] == "":
            continue
        p = _num(row.get(f"{task}_prob"))
        lines.append(f"{task}: {row[col]}" + (f" {p:.2f}" if p is not None else ""))
    values = []
    for t in TASKS.values():
        if t.kind == "regression":
            v = _num(row.get(regression_column(t)))
            if v is not None:
                values.append(f"{t.name.replace('_', ' ')} {v:.0f} {t.unit}")
    if values:
        lines.append("; ".join(values))
    if quiet:
        lines.append("no findings: " + ", ".join(quiet))
    return lines


def is_flagged(row: dict[str, Any]) -> bool:
    """A report row worth drawing: predicted fine, and some task has a finding over threshold
    (not a trait such as sex, nor a `norm` superclass)."""
    if str(row.get("status", "ok")) != "ok":
        return False
    return any(is_finding(c[: -len("_pred")], label) for c, v in row.items()
               if c.endswith("_pred") for label in pred_labels(v))


def match_row(rows: list[dict[str, Any]], path: Path, name: str,
              window: int | None = None) -> dict[str, Any] | None:
    """The report row of a record: same file (extension aside) first, else the same name.

    A report that lists windows (a `window` column) gives the row of the window drawn.
    """
    if window is not None and any("window" in r for r in rows):
        rows = [r for r in rows if r.get("window") == window]
    target = path.resolve().with_suffix("")
    for row in rows:
        p = row.get("path")
        if p and Path(str(p)).resolve().with_suffix("") == target:
            return row
    for row in rows:
        if str(row.get("record", "")) == name:
            return row
    return None
