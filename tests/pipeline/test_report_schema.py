"""The report's schema and its row builder agree: every column is produced, nothing else."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import TINY_SPEC, fake_record

from ecgmoe_cli.model.inference import WindowOutputs
from ecgmoe_cli.pipeline.predict.rows import RowContext, error_row
from ecgmoe_cli.pipeline.predict.schema import beat_schema, report_schema
from ecgmoe_cli.pipeline.predict.sink import record_rows
from ecgmoe_cli.tasks import AAMI_CLASSES, TASKS


def _predicted(beat_head: bool) -> tuple:
    tasks = tuple(TASKS.values())
    prep, _ = fake_record(3, np.random.default_rng(0), n_windows=3)
    rng = np.random.default_rng(1)
    nw, k = len(prep.n_valid), prep.rpeaks.shape[1]
    out = WindowOutputs({t.name: rng.random((nw, t.n_outputs)).astype(np.float32)
                         for t in tasks},
                        {"layer0": rng.random((nw, 4)).astype(np.float32)},
                        rng.random((nw, k)).astype(np.float32),
                        rng.random((nw, k, len(AAMI_CLASSES))).astype(np.float32)
                        if beat_head else None)
    ctx = RowContext(tasks, {t.name: (0.5,) * t.n_outputs for t in tasks}, TINY_SPEC.fs,
                     "w", "s")
    return tasks, prep, out, ctx


@pytest.mark.parametrize("explain", [False, True])
def test_every_record_and_window_column_is_produced_and_nothing_else(explain: bool) -> None:
    tasks, prep, out, ctx = _predicted(beat_head=True)
    row, wrows, beats = record_rows(prep, out, ctx, explain, windows=True)
    made = set(row) | {"source_stamp"}  # the sink stamps every row as it writes it
    assert made == set(report_schema(tasks, explain=explain).names)
    window_cols = set(report_schema(tasks, window=True).names)
    assert len(wrows) == 3 and all(set(w) | {"source_stamp"} == window_cols for w in wrows)
    assert beats is not None and beats("stamp").schema == beat_schema()


def test_without_a_beat_head_the_holter_counts_are_left_null() -> None:
    tasks, prep, out, ctx = _predicted(beat_head=False)
    row, _, beats = record_rows(prep, out, ctx, False, windows=False)
    assert beats is None
    missing = set(report_schema(tasks).names) - set(row) - {"source_stamp"}
    assert missing == {"n_classified", "pvc_count", "pac_count", "pvc_burden"}


def test_an_error_row_holds_only_schema_columns() -> None:
    tasks, _, _, ctx = _predicted(beat_head=False)
    row = error_row("/x/bad.hea", "bad", "truncated\nfile", ctx)
    assert set(row) < set(report_schema(tasks).names) and row["error"] == "truncated file"
