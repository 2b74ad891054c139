"""Where predicted records go: their rows (record, --windows, --beats) into the report
writers, failures as error rows, and what --resume keeps of an earlier run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ecgmoe_cli.io.outputs import check_writable, refuse_input_inside
from ecgmoe_cli.io.report import ReportWriter, is_single_file, source_stamp
from ecgmoe_cli.model.inference import WindowOutputs
from ecgmoe_cli.pipeline.outcomes import Failed, Long
from ecgmoe_cli.pipeline.predict.beats import af_spans, beat_table, holter_columns, record_beats
from ecgmoe_cli.pipeline.predict.options import PredictOptions
from ecgmoe_cli.pipeline.predict.rows import RowContext, Tally, error_row, record_row, window_rows
from ecgmoe_cli.pipeline.predict.schedule import Predicted, predict_long, through_model
from ecgmoe_cli.pipeline.prepare import Prepared
from ecgmoe_cli.signal.spec import PreprocessSpec

if TYPE_CHECKING:
    from ecgmoe_cli.model.inference import Predictor

BEATS_PER_RECORD = 16  # --beats parts and row groups hold this many rows per record's worth


def windows_path(out: Path) -> Path:
    """Where --windows rows go: `r.parquet` -> `r.windows.parquet`; `res/` -> `res.windows/`."""
    return _beside(out, "windows")


def beats_path(out: Path) -> Path:
    """Where --beats rows go: `r.parquet` -> `r.beats.parquet`; dataset `res/` -> `res.beats/`."""
    return _beside(out, "beats")


def _beside(out: Path, what: str) -> Path:
    out = Path(out)
    if is_single_file(out):
        return out.with_name(f"{out.stem}.{what}.parquet")
    return out.with_name(f"{out.name}.{what}")


def report_writer(path: Path, schema: pa.Schema, opts: PredictOptions, root: Path,
                  rows_per_record: int = 1) -> ReportWriter:
    """A writer for one of the run's reports, its target checked before any record is read."""
    refuse_input_inside(path, [root])
    per_part = opts.checkpoint_every * rows_per_record
    writer = ReportWriter(path, schema, shard=opts.shard, resume=opts.resume,
                          rows_per_part=per_part,
                          rows_per_group=min(512 * rows_per_record, per_part))
    writer.check_target(opts.overwrite)
    check_writable(writer.parts_dir, path)
    return writer


def stale(done: dict[str, str], keys: dict[str, str]) -> tuple[list[str], list[str]]:
    """--resume: the records whose files changed since their row was written (size or
    modification time), and the rows whose record is no longer under INPUT."""
    by_key = {k: p for p, k in keys.items()}
    changed = sorted(k for k, stamp in done.items()
                     if k in by_key and stamp != source_stamp(by_key[k]))
    vanished = sorted(k for k in done if k not in by_key)
    return changed, vanished


def record_rows(item: Prepared, out: WindowOutputs, ctx: RowContext, explain: bool,
                windows: bool) -> tuple[dict[str, Any], list[dict[str, Any]],
                                        Callable[[str], pa.Table] | None]:
    """A predicted record's report row, its --windows rows (when asked) and its --beats rows
    (built only when called with the row's source_stamp; None without a beat head)."""
    wrows = window_rows(item, out, ctx) if windows else []
    spans = af_spans(item, out, ctx)  # the AF episodes, for the beats and af_burden
    beats = record_beats(item, out, ctx, spans)
    row = record_row(item, out, ctx, explain)
    row.update(holter_columns(item, ctx, beats, spans))
    return row, wrows, (None if beats is None else
                        lambda stamp: beat_table(item, beats, ctx.fs, stamp))


class Sink:
    """Turns prepared records into rows: batches their windows through the model."""

    def __init__(self, predictor: Predictor, ctx: RowContext,
                 writers: tuple[ReportWriter, ReportWriter | None, ReportWriter | None],
                 skip: dict[str, dict[str, str]], spec: PreprocessSpec, opts: PredictOptions,
                 tally: Tally) -> None:
        self.predictor, self.ctx, self.skip, self.tally = predictor, ctx, skip, tally
        self.writer, self.win_writer, self.beat_writer = writers
        self.spec, self.opts = spec, opts
        self.pending: list[Any] = []
        self.n_windows = 0

    def add(self, item: Any) -> int:
        """Queue one prepared record (or failure); returns how many records were written."""
        if isinstance(item, Long):  # its windows go through the model block by block, now
            written = self.flush()
            return written + self.add(predict_long(item, self.spec, self.opts, self.predictor))
        if isinstance(item, Predicted):  # through a worker's model already
            self._emit(item.prepared, item.out)
            return 1
        if isinstance(item, Failed) and not self.pending:
            self._write(error_row(item.path, item.record, item.error, self.ctx), [], None)
            return 1
        self.pending.append(item)
        if not isinstance(item, Failed):
            self.n_windows += len(item.n_valid)
        return self.flush() if self.n_windows >= self.predictor.batch_size else 0

    def flush(self) -> int:
        items, self.pending, self.n_windows = self.pending, [], 0
        if not items:
            return 0
        for item in through_model(self.predictor, items):
            if isinstance(item, Failed):
                self._write(error_row(item.path, item.record, item.error, self.ctx), [], None)
            else:
                self._emit(item.prepared, item.out)
        return len(items)

    def _emit(self, item: Prepared, out: WindowOutputs) -> None:
        self._write(*record_rows(item, out, self.ctx, self.opts.explain,
                                 self.win_writer is not None))

    def _write(self, row: dict[str, Any], wrows: list[dict[str, Any]],
               beat_rows: Callable[[str], pa.Table] | None) -> None:
        """The record's row, its window rows and (`--beats`, built only if written) its beat
        rows, all with the one source_stamp of its files."""
        path = str(row["path"])
        row["source_stamp"] = stamp = source_stamp(path)
        for w in wrows:
            w["source_stamp"] = stamp
        if path not in self.skip["main"]:
            self.writer.write(row)
            self.tally.add(row, self.ctx.tasks)
        if self.win_writer is not None and path not in self.skip["windows"]:
            for w in wrows:
                self.win_writer.write(w)
        if (self.beat_writer is not None and beat_rows is not None
                and path not in self.skip["beats"]):
            self.beat_writer.write_table(beat_rows(stamp))
