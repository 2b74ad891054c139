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
import mmap
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ecgmoe_cli.beat_rows import beat_table, holter_columns, record_beats
from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.discover import records_under
from ecgmoe_cli.io.outputs import OutputLock, check_writable, refuse_input_inside
from ecgmoe_cli.io.readers import check_fs_option, read_record
from ecgmoe_cli.io.report import ReportWriter, beat_schema, report_schema, shard_of, source_stamp
from ecgmoe_cli.parallel import FORKS, Prefetch, default_workers, ordered_map, worker_state
from ecgmoe_cli.prepare import (  # imported before the fork: workers share them
    CHUNK_S,
    join_blocks,
    prepare_chunks,
    prepare_from_record,
)
from ecgmoe_cli.preprocess_folder import Failed, Long, one_line, safe_text
from ecgmoe_cli.report_rows import (
    WINDOW_FIELDS,
    RowContext,
    Tally,
    WindowOutputs,
    error_row,
    record_row,
    sustained_windows,
    weights_id,
    window_rows,
)
from ecgmoe_cli.signal.spec import PreprocessSpec
from ecgmoe_cli.tasks import TASKS
from ecgmoe_cli.weights_meta import (
    BEAT_HEAD,
    HEADS,
    beat_head_problem,
    default_weights_dir,
    read_backbone_meta,
    read_plan,
)

if TYPE_CHECKING:
    from ecgmoe_cli.inference import Predictor

_CHUNK = 16  # records per worker task: amortises inter-process overhead
_AHEAD = 24  # chunks prepared ahead of the model (~60 MB): a start-up's worth of reading
_EARLY_BYTES = 128 << 20  # most samples prepared while the model loads (CPU, models in workers)
BEATS_PER_RECORD = 16  # --beats parts and row groups hold this many rows per record's worth
CPU_BATCH = 64  # a worker's chunk is one batch: larger ones leave a core idle at the end
GPU_BATCH = 256  # a GPU is bound by kernel launches: fewer, larger batches (BENCHMARKS.md)


@dataclass
class PredictOptions:
    """Everything `ecgmoe predict` accepts besides INPUT and -o."""

    weights: Path | None = None  # None: the shipped weights (weights.default_weights_dir)
    tasks: Sequence[str] | None = None  # None: every adapter the weights have
    device: str = "cpu"
    workers: int = 0  # worker processes; 0: one per core (CPU: each with a model); 1: none
    batch_size: int = 0  # windows per forward pass; 0: GPU_BATCH on a GPU, CPU_BATCH on CPU
    windows: bool = False  # also write per-window rows (windows_path)
    beats: bool = False  # also write per-beat rows (beats_path); needs the weights' beat head
    explain: bool = False  # add the `explain` column
    shard: tuple[int, int] = (0, 1)
    resume: bool = False
    checkpoint_every: int = 2048  # records per sealed part file: the most a kill can lose
    lead_map: dict[str, str] | None = None
    fs: float | None = None  # for headerless CSV/NPY
    lead_names: list[str] | None = None  # for headerless CSV/NPY
    overwrite: bool = False  # replace an existing report (never anything else)


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


def windows_path(out: Path) -> Path:
    """Where --windows rows go: `r.parquet` -> `r.windows.parquet`; dataset `res/` -> `res.windows/`."""
    return _beside(out, "windows")


def beats_path(out: Path) -> Path:
    """Where --beats rows go: `r.parquet` -> `r.beats.parquet`; dataset `res/` -> `res.beats/`."""
    return _beside(out, "beats")


def _beside(out: Path, what: str) -> Path:
    out = Path(out)
    if out.suffix == ".parquet" and not out.is_dir():
        return out.with_name(f"{out.stem}.{what}.parquet")
    return out.with_name(f"{out.name}.{what}")


def record_key(path: Path, root: Path) -> str:
    """The shard key: the path under INPUT, so every machine of a job agrees on the split."""
    return path.name if path == root or not root.is_dir() else path.relative_to(root).as_posix()


def _prepare_job(path: str) -> Any:
    """Worker: read + prepare one record with the weights' spec; a failure becomes Failed, a
    record longer than one block becomes Long (the parent streams it through the model)."""
    st = worker_state()
    opts: PredictOptions = st["opts"]
    try:
        record = read_record(path, fs=opts.fs, lead_names=opts.lead_names)
        if record.duration_s > CHUNK_S:
            return Long(Path(path))
        prepared = prepare_from_record(record, st["spec"], lead_map=opts.lead_map)
        prepared.path = path  # the report's key, exactly as discovered (--resume compares it)
        return prepared
    except EcgMoeError as e:
        return Failed(path, Path(path).stem, one_line(str(e)))
    except Exception as e:  # noqa: BLE001 (one unforeseen file must not stop a long run)
        return Failed(path, Path(path).stem, one_line(f"{path}: {type(e).__name__}: {e}"))


def _early_job(path: str) -> tuple[str, Any, slice] | None:
    """Prefetch worker: `_prepare_job`, the windows' samples moved into the shared buffer
    (mapped before the fork: the pipe carries only the small fields); None once it is full.
    Returns the path, the record and where its samples lie in the buffer. The record that
    overflows it keeps its samples (they cross the pipe) and marks the buffer full."""
    st = worker_state()
    if st["used"] >= len(st["signals"]):
        return None
    item = _prepare_job(path)
    lo = st["used"]
    rows = slice(lo, lo + len(getattr(item, "n_valid", ())))
    if rows.stop > len(st["signals"]):
        st["used"] = len(st["signals"])
        return path, item, slice(lo, lo)
    if rows.stop > lo:
        st["signals"][rows] = item.signal
        item.signal = _emptied(item.signal)
        st["used"] = rows.stop
    return path, item, rows


def _early_head(todo: Sequence[str], spec: PreprocessSpec, opts: PredictOptions
                ) -> tuple[Prefetch, np.ndarray]:
    """Start preparing the first records in one process (their windows' samples at most
    _EARLY_BYTES: 1,118 windows of the default spec) while this one loads the model; returns
    it and the shared buffer the samples go to."""
    per_window = (len(spec.leads), spec.window_samples)
    n = max(1, _EARLY_BYTES // (4 * per_window[0] * per_window[1]))
    signals = np.frombuffer(mmap.mmap(-1, 4 * n * per_window[0] * per_window[1]),
                            np.float32).reshape(n, *per_window)
    state = {"spec": spec, "opts": opts, "signals": signals, "used": 0}
    return Prefetch(_early_job, todo[:n], state=state), signals


def _with_samples(taken: list[tuple[str, Any, slice]], signals: np.ndarray) -> dict[str, Any]:
    """Prefetched records by path, their samples back as views of the shared buffer."""
    for _, item, rows in taken:
        if rows.stop > rows.start:
            item.signal = signals[rows]
    return {path: item for path, item, _ in taken}


@dataclass
class Predicted:
    """A record through the model: its prepared fields (samples dropped) and window outputs."""

    prepared: Any
    out: WindowOutputs


def _predict_chunk(paths: Sequence[str]) -> list[Any]:
    """Worker with its own copy of the model (CPU): read, prepare and predict a chunk of records
    in one batch, so each process uses its core end to end and only small results cross the
    pipe. Returns Predicted or Failed per path, in order."""
    st = worker_state()
    predictor, spec, opts, ready = st["predictor"], st["spec"], st["opts"], st["prepared"]
    items = [x if (x := ready.pop(p, None)) is not None else _prepare_job(p) for p in paths]
    return _through_model(predictor, [_predict_long(x.path, spec, opts, predictor)
                                      if isinstance(x, Long) else x for x in items])


def _through_model(predictor: Predictor, items: Sequence[Any]) -> list[Any]:
    """Every prepared record among `items` through the model in one batch, as Predicted (its
    samples dropped); Failed and Predicted items pass as they are, in order."""
    ready = [x for x in items if not isinstance(x, (Failed, Predicted))]
    out = predictor(_stack(ready)) if ready else None
    results, start = [], 0
    for x in items:
        if isinstance(x, (Failed, Predicted)):
            results.append(x)
            continue
        assert out is not None
        n = len(x.n_valid)
        x.signal, x.rr = _emptied(x.signal), _emptied(x.rr)
        results.append(Predicted(x, out.rows(start, start + n)))
        start += n
    return results


def _predict_long(path: Path, spec: PreprocessSpec, opts: PredictOptions,
                  predictor: Predictor) -> Predicted | Failed:
    """`_long_record`, with a failure as a Failed row (the run goes on)."""
    try:
        return Predicted(*_long_record(path, spec, opts, predictor))
    except EcgMoeError as e:
        return Failed(str(path), path.stem, one_line(str(e)))
    except Exception as e:  # noqa: BLE001 (as in the workers: the run goes on)
        return Failed(str(path), path.stem, one_line(f"{path}: {type(e).__name__}: {e}"))


def _long_record(path: Path, spec: PreprocessSpec, opts: PredictOptions,
                 predictor: Predictor) -> tuple[Any, WindowOutputs]:
    """A long record block by block through the model: only the per-window outputs and beat
    indices are kept (a 24 h Holter's samples never sit in memory as windows); heart rate,
    beats and quality are the whole record's."""
    record = read_record(path, fs=opts.fs, lead_names=opts.lead_names)
    blocks, outs = [], []
    for block in prepare_chunks(record, spec, lead_map=opts.lead_map):
        outs.append(predictor(_stack([block])))
        block.signal, block.rr = _emptied(block.signal), _emptied(block.rr)
        blocks.append(block)
    del record
    prepared = join_blocks(blocks, spec)
    prepared.path = str(path)
    return prepared, WindowOutputs(
        {t: np.concatenate([o.probs[t] for o in outs]) for t in outs[0].probs},
        {k: np.concatenate([o.routing[k] for o in outs]) for k in outs[0].routing},
        None if outs[0].beat_weights is None
        else np.concatenate([o.beat_weights for o in outs]),  # type: ignore[misc]
        None if outs[0].beat_probs is None
        else np.concatenate([o.beat_probs for o in outs]))  # type: ignore[misc]


def _emptied(a: np.ndarray) -> np.ndarray:
    """A new 0-row array shaped like `a` (a slice `a[:0]` would keep all of `a` alive)."""
    return np.empty((0, *a.shape[1:]), a.dtype)


def _stack(items: Sequence[Any]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([getattr(p, k) for p in items]) for k in WINDOW_FIELDS}


class _Sink:
    """Turns prepared records into rows: batches their windows through the model."""

    def __init__(self, predictor: Predictor | None, ctx: RowContext, writer: ReportWriter,
                 win_writer: ReportWriter | None, beat_writer: ReportWriter | None,
                 skip: dict[str, dict[str, str]], spec: PreprocessSpec, opts: PredictOptions,
                 tally: Tally) -> None:
        self.predictor, self.ctx, self.writer, self.win_writer = predictor, ctx, writer, win_writer
        self.beat_writer, self.skip, self.tally = beat_writer, skip, tally
        self.spec, self.opts, self.explain = spec, opts, opts.explain
        self.pending: list[Any] = []
        self.n_windows = 0

    def add(self, item: Any) -> int:
        """Queue one prepared record (or failure); returns how many records were written."""
        if isinstance(item, Long):  # its windows go through the model block by block, now
            written = self.flush()
            return written + self.add(_predict_long(item.path, self.spec, self.opts,
                                                    self.predictor))
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
        assert self.predictor is not None  # only the main-process layout queues records
        for item in _through_model(self.predictor, items):
            if isinstance(item, Failed):
                self._write(error_row(item.path, item.record, item.error, self.ctx), [], None)
            else:
                self._emit(item.prepared, item.out)
        return len(items)

    def _emit(self, item: Any, out: WindowOutputs) -> None:
        wrows = window_rows(item, out, self.ctx) if self.win_writer is not None else []
        beats = record_beats(item, out, self.ctx)
        row = record_row(item, out, self.ctx, self.explain)
        row.update(holter_columns(item, out, self.ctx, beats))
        self._write(row, wrows, None if beats is None else
                    lambda stamp: beat_table(item, beats, self.ctx.fs, stamp))

    def _write(self, row: dict[str, Any], wrows: list[dict[str, Any]],
               beat_rows: Callable[[str], Any] | None) -> None:
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


def _check_options(opts: PredictOptions, out: Path) -> None:
    """Every problem with the options at once, before the model loads."""
    i, n = opts.shard
    problems = []
    if n > 1 and out.suffix == ".parquet" and not out.is_dir():
        problems.append(f"--shard {i}/{n} needs a directory output (e.g. -o results/) where "
                        "each shard writes its own part files; got a single file")
    if opts.batch_size < 0:
        problems.append(f"--batch-size must be >= 1 (or 0: the device's default), got "
                        f"{opts.batch_size}")
    if opts.checkpoint_every < 1:
        problems.append(f"--checkpoint-every must be >= 1, got {opts.checkpoint_every}")
    if opts.workers < 0:
        problems.append(f"--workers must be >= 0, got {opts.workers}")
    if problems:
        raise EcgMoeError("; ".join(problems), out)
    check_fs_option(opts.fs)
    if not _on_cpu(opts):  # before any file is made (torch is imported for it, early)
        from ecgmoe_cli.training.ddp import resolve_device

        resolve_device(opts.device)


def predict_folder(root: Path, out: Path, opts: PredictOptions,
                   progress: Callable[[int, int], None] | None = None) -> PredictResult:
    """Predict every record under `root` (this shard, not yet done) into the report `out`.

    progress(done, total) is called as records are written.
    """
    t0 = time.perf_counter()
    root, out = Path(root), Path(out)
    _check_options(opts, out)
    opts = replace(opts, batch_size=batch_size_for(opts))
    i, n = opts.shard
    weights_dir = Path(opts.weights) if opts.weights else default_weights_dir()
    spec, found = read_plan(weights_dir, opts.tasks)  # JSON sidecars only: no torch yet
    if not found:
        raise EcgMoeError("weights have no task adapters (adapters/*.json)", weights_dir)
    order = list(TASKS)  # report columns in the registry's order, user tasks after
    tasks = tuple(sorted(found, key=lambda t: (order.index(t.name) if t.name in order
                                                else len(order), t.name)))
    names = [t.name for t in tasks]
    head_problem = _beat_head_problem(weights_dir)
    if head_problem and opts.beats:
        raise EcgMoeError(f"--beats: {head_problem}")

    def report_writer(path: Path, schema: Any, rows_per_record: int = 1) -> ReportWriter:
        refuse_input_inside(path, [root])
        per_part = opts.checkpoint_every * rows_per_record
        writer = ReportWriter(path, schema, shard=opts.shard, resume=opts.resume,
                              rows_per_part=per_part, rows_per_group=min(512 * rows_per_record,
                                                                         per_part))
        writer.check_target(opts.overwrite)
        check_writable(writer.parts_dir, path)
        return writer

    lock = OutputLock(out, "" if n == 1 else f".part-{i:05d}-of-{n:05d}")
    lock.acquire()  # before the target is judged: a run finishing meanwhile is seen
    try:
        writer = report_writer(out, report_schema(tasks, explain=opts.explain))
        win_writer = (report_writer(windows_path(out), report_schema(tasks, window=True))
                      if opts.windows else None)
        beat_writer = (report_writer(beats_path(out), beat_schema(), BEATS_PER_RECORD)
                       if opts.beats else None)
        side = [w for w in (win_writer, beat_writer) if w is not None]
        paths = records_under(root)
        mine = [os.path.abspath(p) for p in paths if shard_of(record_key(p, root), n) == i]
        keys = {p: safe_text(p) for p in mine}  # the `path` column: undecodable bytes U+FFFD
        skip: dict[str, dict[str, str]] = {
            "main": writer.done_keys() if opts.resume else {},
            "windows": win_writer.done_keys() if (win_writer and opts.resume) else {},
            "beats": beat_writer.done_keys() if (beat_writer and opts.resume) else {}}
        done = skip["main"]
        changed, vanished = _stale(done, keys)
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
        if _models_in_workers(opts, len(todo)) and FORKS:  # the buffer is shared by fork
            early, signals = _early_head(todo, spec, opts)
            shared = _start_model(weights_dir, names, opts, spec, threads=1)
            prepared = _with_samples(early.take(), signals)
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
        sink = _Sink(predictor, ctx, writer, win_writer, beat_writer, skip, spec, opts,
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


def _stale(done: dict[str, str], keys: dict[str, str]) -> tuple[list[str], list[str]]:
    """--resume: the records whose files changed since their row was written (size or
    modification time), and the rows whose record is no longer under INPUT."""
    by_key = {k: p for p, k in keys.items()}
    changed = sorted(k for k, stamp in done.items()
                     if k in by_key and stamp != source_stamp(by_key[k]))
    vanished = sorted(k for k in done if k not in by_key)
    return changed, vanished


def _start_model(weights_dir: Path, names: list[str], opts: PredictOptions,
                 spec: PreprocessSpec, threads: int | None = None
                 ) -> tuple[Predictor, RowContext]:
    """Import torch and load the weights (the slow part of start-up, after the readers began)."""
    import torch

    from ecgmoe_cli import weights
    from ecgmoe_cli.inference import Predictor
    from ecgmoe_cli.training.ddp import resolve_device

    device = resolve_device(opts.device)
    if device == "cpu":  # the model and the reader processes split the cores (_model_threads)
        torch.set_num_threads(threads or _model_threads(opts))
    model, loaded_spec, meta = weights.load_model(weights_dir, names, device)
    if loaded_spec != spec:  # the same backbone.json, unless it changed under our feet
        raise EcgMoeError("backbone.json changed while predict started", weights_dir)
    head = (None if _beat_head_problem(weights_dir)
            else weights.load_beat_head(weights_dir, meta["backbone_hash"], device)[0])
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


def _model_threads(opts: PredictOptions) -> int:
    """CPU inference in the main process: half the cores run the model, the other half read
    and prepare records (the two cost about the same per record); with --workers 1 nothing
    else runs beside the model, so it gets them all."""
    return default_workers() if opts.workers == 1 else max(1, default_workers() // 2)


def _models_in_workers(opts: PredictOptions, n_records: int) -> bool:
    """On CPU, each worker process runs its own model on its own records (read, prepare,
    predict), unless --workers 1 or the folder fits in one batch: no process waits for
    another. With one model in the main process, that process was the bottleneck (its model
    alone needs ~3.5 ms per record) while the readers idled a quarter of the time."""
    return (_on_cpu(opts) and opts.workers != 1
            and (opts.workers or default_workers()) > 1 and n_records > opts.batch_size)


def batch_size_for(opts: PredictOptions) -> int:
    """--batch-size, or the device's default (0): a GPU wants bigger batches than the CPU
    workers, whose chunk is one batch."""
    return opts.batch_size or (CPU_BATCH if _on_cpu(opts) else GPU_BATCH)


def _on_cpu(opts: PredictOptions) -> bool:
    return not str(opts.device).startswith("cuda")


def prepared_stream(paths: Sequence[str], spec: PreprocessSpec, opts: PredictOptions,
                    predictor: Predictor | None = None,
                    prepared: dict[str, Any] | None = None) -> Iterator[Any]:
    """Records in input order from worker processes: Predicted by the workers' copies of
    `predictor` when given (forked after it loaded: no worker imports torch or reads the
    weights again; records already in `prepared` are not read again), else prepared (or
    Failed) for the main process's model. Up to _AHEAD chunks wait, so the readers keep going
    through the main process's start-up."""
    if predictor is not None:
        workers = opts.workers or default_workers()
        return ordered_map(_predict_chunk, paths, workers=workers, chunk=opts.batch_size,
                           state={"spec": spec, "opts": opts, "predictor": predictor,
                                  "prepared": prepared or {}},
                           pool=True, max_pending=max(_AHEAD, 4 * workers), whole_chunks=True)
    auto = default_workers() - (_model_threads(opts) if _on_cpu(opts) else 0)
    workers = max(1, min(opts.workers or auto, len(paths) // _CHUNK + 1))
    return ordered_map(_prepare_job, paths, workers=workers, chunk=_CHUNK,
                       state={"spec": spec, "opts": opts}, pool=opts.workers != 1,
                       max_pending=max(_AHEAD, 4 * workers))
