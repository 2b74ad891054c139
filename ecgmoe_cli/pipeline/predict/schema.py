"""The columns of `predict`'s reports (README, 'Report schema'): the record report, its
`--windows` and `--beats` companions. rows.py and beats.py, beside it, fill them; a test checks
that every column is produced and nothing else."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from ecgmoe_cli.tasks import Task

RECORD_FIELDS: list[tuple[str, pa.DataType]] = [
    ("path", pa.string()),
    ("record", pa.string()),
    ("status", pa.string()),
    ("error", pa.string()),
    ("fs_in", pa.float64()),
    ("duration_s", pa.float64()),
    ("n_windows", pa.int32()),
    ("leads_used", pa.string()),
    ("lead_warnings", pa.string()),
    ("heart_rate_bpm", pa.float32()),
    ("n_beats", pa.int32()),
    ("quality", pa.float32()),
    ("low_quality", pa.bool_()),
]
# Holter summary of every record row (README, 'Report schema'): from the beat head and the
# rhythm task's per-window AF calls; null where the weights have no beat head (or no rhythm)
HOLTER_FIELDS: list[tuple[str, pa.DataType]] = [
    ("n_classified", pa.int32()),
    ("pvc_count", pa.int32()),
    ("pac_count", pa.int32()),
    ("pvc_burden", pa.float32()),
    ("af_burden", pa.float32()),
]
# `predict --beats`: one row per detected beat
BEAT_FIELDS: list[tuple[str, pa.DataType]] = [
    ("path", pa.string()),
    ("record", pa.string()),
    ("time_s", pa.float64()),
    ("sample", pa.int64()),
    ("rr_pre_ms", pa.float32()),
    ("rr_post_ms", pa.float32()),
    ("beat_class", pa.string()),
    ("beat_prob", pa.float32()),
    ("source_stamp", pa.string()),
]
TRAILER_FIELDS: list[tuple[str, pa.DataType]] = [
    ("weights_id", pa.string()), ("spec_hash", pa.string()), ("source_stamp", pa.string())]


def regression_column(task: Task) -> str:
    """`age_years`, `rr_interval_ms`; a unitless user task gets `<task>_value`."""
    return f"{task.name}_{task.unit}" if task.unit else f"{task.name}_value"


def pred_labels(value: Any) -> list[str]:
    """The labels of a `_pred` cell (written "a,b"), whether read as a string, a list/array,
    empty or null."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    try:
        return [str(v).strip() for v in value if str(v).strip()]
    except TypeError:
        return []


def task_fields(task: Task) -> list[tuple[str, pa.DataType]]:
    """The report columns of one task, by kind (documented in README, 'Report schema')."""
    if task.kind in ("binary", "multilabel"):
        per_label = [(f"{task.name}_{label}_prob", pa.float32()) for label in task.labels]
        return [(f"{task.name}_prob", pa.float32()), *per_label, (f"{task.name}_pred", pa.string())]
    if task.kind == "multiclass":
        return [(f"{task.name}_class", pa.string()), (f"{task.name}_prob", pa.float32())]
    return [(regression_column(task), pa.float32())]


def report_schema(tasks: Iterable[Task], *, window: bool = False, explain: bool = False
                  ) -> pa.Schema:
    """The record report's columns (`window`: the --windows report's, no Holter summary)."""
    fields = list(RECORD_FIELDS)
    if window:
        fields[2:2] = [("window", pa.int32()), ("start_s", pa.float32())]
    else:
        fields += HOLTER_FIELDS
    for task in tasks:
        fields += task_fields(task)
    if explain:
        fields.append(("explain", pa.string()))
    return pa.schema(fields + TRAILER_FIELDS)


def beat_schema() -> pa.Schema:
    """The --beats report's columns: one row per beat."""
    return pa.schema(BEAT_FIELDS)
