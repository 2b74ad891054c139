"""`predict` as a plain function: a folder of records into a Parquet report, at any scale.

```
discover (sorted) ─shard─▶ --resume skips done ─▶ CPU: worker processes, each with its own
copy of the model (loaded before the fork): read + prepare + predict a batch of records
(while the model loads, one process prepares the first records: the workers inherit them)
─in order─▶ main process: rows ─▶ ReportWriter row groups ─close─▶ atomic rename (or dataset parts)
GPU: reader processes prepare records ─▶ the main process batches windows through its model
(--workers 1: everything in the main process)
```
Memory stays flat: the pool holds a bounded number of chunks ahead of the writer, each worker
one batch of windows (plus one long record's block), and rows leave in row groups.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.files import safe_text
from ecgmoe_cli.io.outputs import OutputLock
from ecgmoe_cli.io.records.discover import records_under
from ecgmoe_cli.io.report import shard_of, source_stamp
from ecgmoe_cli.pipeline.outcomes import Failed, Long
from ecgmoe_cli.pipeline.parallel import FORKS
from ecgmoe_cli.pipeline.predict.options import PredictOptions, batch_size_for, check_options
from ecgmoe_cli.pipeline.predict.rows import (
    RowContext,
    Tally,
    error_row,
    sustained_windows,
    weights_id,
)
from ecgmoe_cli.pipeline.predict.schedule import (
    early_head,
    model_threads,
    models_in_workers,
    predict_long,
    prepared_stream,
    through_model,
    with_samples,
)
from ecgmoe_cli.pipeline.predict.schema import beat_schema, report_schema
from ecgmoe_cli.pipeline.predict.sink import (
    BEATS_PER_RECORD,
    Sink,
    beats_path,
    record_rows,
    report_writer,
    stale,
    windows_path,
)
from ecgmoe_cli.signal.spec import PreprocessSpec
from ecgmoe_cli.tasks import TASKS, Task
from ecgmoe_cli.weights.meta import (
    BEAT_HEAD,
    HEADS,
    beat_head_problem,
    default_weights_dir,
    read_backbone_meta,
    read_plan,
)

if TYPE_CHECKING:
    from ecgmoe_cli.model.inference import Predictor


@dataclass
class PredictResult:
    """What the summary prints."""

    output: Path
    windows_output: Path | None
    beats_output: Path | None
    weights_dir: Path
    weights_id: str
    tasks: list[str]
    n_found: int  # records under INPUT
    n_shard: int  # of which in this shard
    n_resumed: int  # of which already in the report (--resume)
    seconds: float = 0.0
    tally: Tally = field(default_factory=Tally)
    changed: list[str] = field(default_factory=list)  # --resume: predicted again (changed since)
    vanished: list[str] = field(default_factory=list)  # --resume: rows dropped (no longer there)
    report_status: dict[str, int] = field(default_factory=dict)  # --resume: the whole report's
    warnings: list[str] = field(default_factory=list)  # one line each, for the summary

    @property
    def n_processed(self) -> int:
        return sum(self.tally.status.values())


def record_key(path: Path, root: Path) -> str:
    """The shard key: the path under INPUT, so every machine of a job agrees on the split."""
    return path.name if path == root or not root.is_dir() else path.relative_to(root).as_posix()


def predict_folder(root: Path, out: Path, opts: PredictOptions,
                   progress: Callable[[int, int], None] | None = None) -> PredictResult:
    """Predict every record under `root` (this shard, not yet done) into the report `out`.

    progress(done, total) is called as records are written.
    """
    t0 = time.perf_counter()
    root, out = Path(root), Path(out)
    check_options(opts, out)
    opts = replace(opts, batch_size=batch_size_for(opts))
    i, n = opts.shard
    weights_dir, spec, tasks, head_problem = _plan(opts)
    names = [t.name for t in tasks]

    lock = OutputLock(out, "" if n == 1 else f".part-{i:05d}-of-{n:05d}")
    lock.acquire()  # before the target is judged: a run finishing meanwhile is seen
    try:
        writer = report_writer(out, report_schema(tasks, explain=opts.explain), opts, root)
        win_writer = (report_writer(windows_path(out), report_schema(tasks, window=True), opts,
                                    root) if opts.windows else None)
        beat_writer = (report_writer(beats_path(out), beat_schema(), opts, root,
                                     BEATS_PER_RECORD) if opts.beats else None)
        side = [w for w in (win_writer, beat_writer) if w is not None]
        paths = records_under(root)
        mine = [os.path.abspath(p) for p in paths if shard_of(record_key(p, root), n) == i]
        keys = {p: safe_text(p) for p in mine}  # the `path` column: undecodable bytes U+FFFD
        skip: dict[str, dict[str, str]] = {
            "main": writer.done_keys() if opts.resume else {},
            "windows": win_writer.done_keys() if (win_writer and opts.resume) else {},
            "beats": beat_writer.done_keys() if (beat_writer and opts.resume) else {}}
        done = skip["main"]
        changed, vanished = stale(done, keys)
        for w, d in ((writer, done), (win_writer, skip["windows"]), (beat_writer, skip["beats"])):
            if w is not None and (gone := (set(changed) | set(vanished)) & set(d)):
                w.drop(gone)
                for k in gone:
                    d.pop(k)
    except BaseException:
        lock.release()
        raise
    todo = [p for p in mine if keys[p] not in done
            or (win_writer is not None and keys[p] not in skip["windows"])
            or (beat_writer is not None and keys[p] not in skip["beats"])]
    written = 0
    stream = early = None
    try:
        # CPU: the model loads before the fork and every worker runs its copy on its records;
        # meanwhile (a core idle: ~2 s of torch import) one process prepares the first records,
        # which the workers inherit. Otherwise (a GPU, --workers 1) the readers start first
        # and overlap the model's load.
        shared, prepared = None, {}
        if models_in_workers(opts, len(todo)) and FORKS:  # the buffer is shared by fork
            early, signals = early_head(todo, spec, opts)
            shared = _start_model(weights_dir, names, opts, spec, threads=1)
            prepared = with_samples(early.take(), signals)
            del signals
        stream = prepared_stream(todo, spec, opts, None if shared is None else shared[0],
                                 prepared)
        del prepared  # the workers have it now
        first = next(stream, None)
        predictor, ctx = shared or _start_model(weights_dir, names, opts, spec)
        result = PredictResult(out, windows_path(out) if opts.windows else None,
                               beats_path(out) if opts.beats else None, weights_dir,
                               ctx.weights_id, names, len(paths), len(mine),
                               sum(keys[p] in done for p in mine), changed=changed,
                               vanished=vanished)
        if head_problem and (weights_dir / HEADS / f"{BEAT_HEAD}.json").is_file():  # not ours
            result.warnings.append(f"beat head skipped (Holter beat columns null): "
                                   f"{head_problem}")
        sink = Sink(predictor, ctx, (writer, win_writer, beat_writer), skip, spec, opts,
                    result.tally)
        for item in itertools.chain([] if first is None else [first], stream):
            written += sink.add(item)
            if progress:
                progress(written, len(todo))
        written += sink.flush()
        if progress:
            progress(written, len(todo))
        writer.close()
        if opts.resume:
            result.report_status = writer.status_counts()
        for w in side:
            w.close()
    except BaseException:
        if early is not None:
            early.close()
        if stream is not None:
            stream.close()  # stops the worker processes
        writer.abort()
        for w in side:
            w.abort()
        raise
    finally:
        lock.release()
    result.seconds = time.perf_counter() - t0
    return result


def _plan(opts: PredictOptions) -> tuple[Path, PreprocessSpec, tuple[Task, ...], str | None]:
    """The weights folder, its spec, the tasks in report order and why its beat head cannot be
    used (None: it can), from the JSON sidecars alone: no torch yet."""
    weights_dir = Path(opts.weights) if opts.weights else default_weights_dir()
    spec, found = read_plan(weights_dir, opts.tasks)
    if not found:
        raise EcgMoeError("weights have no task adapters (adapters/*.json)", weights_dir)
    order = list(TASKS)  # report columns in the registry's order, user tasks after
    tasks = tuple(sorted(found, key=lambda t: (order.index(t.name) if t.name in order
                                                else len(order), t.name)))
    head_problem = _beat_head_problem(weights_dir)
    if head_problem and opts.beats:
        raise EcgMoeError(f"--beats: {head_problem}")
    return weights_dir, spec, tasks, head_problem


def predict_record(path: Path, opts: PredictOptions) -> dict[str, Any]:
    """One record's report row in memory, exactly as `predict_folder` writes it (`plot
    --weights`): the same prepare, model and row builder in this process, and its values cast
    to the report's column types."""
    from ecgmoe_cli.io.arrow_table import rows_to_table

    threads = model_threads(opts)  # a folder's run of this record alone: the same float sums
    opts = replace(opts, workers=1, windows=False, beats=False, explain=False)
    opts = replace(opts, batch_size=batch_size_for(opts))
    check_options(opts, Path(path))
    weights_dir, spec, tasks, _ = _plan(opts)
    predictor, ctx = _start_model(weights_dir, [t.name for t in tasks], opts, spec, threads)
    key = os.path.abspath(records_under(Path(path))[0])  # `100` is `100.hea`, as in a folder
    item = next(prepared_stream([key], spec, opts))
    if isinstance(item, Long):
        item = predict_long(item, spec, opts, predictor)
    item = through_model(predictor, [item])[0]
    row = (error_row(item.path, item.record, item.error, ctx) if isinstance(item, Failed)
           else record_rows(item.prepared, item.out, ctx, explain=False, windows=False)[0])
    row["source_stamp"] = source_stamp(str(row["path"]))
    return rows_to_table([row], report_schema(tasks)).to_pylist()[0]


def _start_model(weights_dir: Path, names: list[str], opts: PredictOptions,
                 spec: PreprocessSpec, threads: int | None = None
                 ) -> tuple[Predictor, RowContext]:
    """Import torch and load the weights (the slow part of start-up, after the readers began)."""
    import torch

    from ecgmoe_cli.model.device import resolve_device
    from ecgmoe_cli.model.inference import Predictor
    from ecgmoe_cli.weights import store

    device = resolve_device(opts.device)
    if device == "cpu":  # the model and the reader processes split the cores (_model_threads)
        torch.set_num_threads(threads or model_threads(opts))
    model, loaded_spec, meta = store.load_model(weights_dir, names, device)
    if loaded_spec != spec:  # the same backbone.json, unless it changed under our feet
        raise EcgMoeError("backbone.json changed while predict started", weights_dir)
    head = (None if _beat_head_problem(weights_dir)
            else store.load_beat_head(weights_dir, meta["backbone_hash"], device)[0])
    if opts.beats and head is None:
        raise EcgMoeError("--beats: the beat head changed while predict started", weights_dir)
    ctx = RowContext(tuple(model.tasks[t] for t in names),
                     {t: tuple(model.heads[t].thresholds) for t in names},  # type: ignore
                     spec.fs, weights_id(meta, names), spec.hash(),
                     sustained_windows(spec.stride_s))
    return Predictor(model, names, device, opts.batch_size, opts.explain, head), ctx


def _beat_head_problem(weights_dir: Path) -> str | None:
    """Why the weights' beat head cannot be used (JSON only, before torch loads), or None."""
    return beat_head_problem(weights_dir, str(read_backbone_meta(weights_dir)["backbone_hash"]))
