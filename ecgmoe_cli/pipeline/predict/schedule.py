"""How records reach the model, in three layouts, and how the cores are split between them.

```
CPU: worker processes, each with its own copy of the model (loaded before the fork): read +
     prepare + predict a batch of records (while the model loads, one process prepares the
     first records: the workers inherit them)
GPU: reader processes prepare records ─▶ the main process batches windows through its model
--workers 1: everything in the main process
```
A long record goes through the model block by block wherever it is met, so memory stays flat.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ecgmoe_cli.io.records.read import read_record
from ecgmoe_cli.model.batch import BATCH_KEYS
from ecgmoe_cli.model.inference import WindowOutputs
from ecgmoe_cli.pipeline.outcomes import Failed, Long, guarded
from ecgmoe_cli.pipeline.parallel import Prefetch, default_workers, ordered_map, worker_state
from ecgmoe_cli.pipeline.predict.options import PredictOptions, on_cpu
from ecgmoe_cli.pipeline.prepare import (  # imported before the fork: workers share them
    CHUNK_S,
    Prepared,
    join_blocks,
    prepare_chunks,
    prepare_from_record,
)
from ecgmoe_cli.signal.beat_features import record_context
from ecgmoe_cli.signal.spec import PreprocessSpec

if TYPE_CHECKING:
    from ecgmoe_cli.model.inference import Predictor

_CHUNK = 16  # records per worker task: amortises inter-process overhead
_AHEAD = 24  # chunks prepared ahead of the model (~60 MB): a start-up's worth of reading
_EARLY_BYTES = 128 << 20  # most samples prepared while the model loads (CPU, models in workers)


@dataclass
class Predicted:
    """A record through the model: its prepared fields (samples dropped) and window outputs."""

    prepared: Prepared
    out: WindowOutputs


def prepare_job(path: str) -> Prepared | Long | Failed:
    """Worker: read + prepare one record with the weights' spec; a failure becomes Failed, a
    record longer than one block becomes Long (streamed through the model block by block)."""
    st = worker_state()
    opts: PredictOptions = st["opts"]

    def job() -> Prepared | Long:
        record = read_record(path, fs=opts.fs, lead_names=opts.lead_names)
        if record.duration_s > CHUNK_S:
            return Long(Path(path), record)
        prepared = prepare_from_record(record, st["spec"], lead_map=opts.lead_map)
        prepared.path = path  # the report's key, exactly as discovered (--resume compares it)
        return prepared

    return guarded(path, job)


def _early_job(path: str) -> tuple[str, Any, slice] | None:
    """Prefetch worker: `prepare_job`, the windows' samples moved into the shared buffer
    (mapped before the fork: the pipe carries only the small fields); None once it is full.
    Returns the path, the record and where its samples lie in the buffer. The record that
    overflows it keeps its samples (they cross the pipe) and marks the buffer full."""
    st = worker_state()
    if st["used"] >= len(st["signals"]):
        return None
    item = prepare_job(path)
    lo = st["used"]
    rows = slice(lo, lo + len(getattr(item, "n_valid", ())))
    if rows.stop > len(st["signals"]):
        st["used"] = len(st["signals"])
        return path, item, slice(lo, lo)
    if rows.stop > lo:
        st["signals"][rows] = item.signal  # type: ignore[union-attr]
        item.signal = _emptied(item.signal)  # type: ignore[union-attr]
        st["used"] = rows.stop
    return path, item, rows


def early_head(todo: Sequence[str], spec: PreprocessSpec, opts: PredictOptions
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


def with_samples(taken: list[tuple[str, Any, slice]], signals: np.ndarray) -> dict[str, Any]:
    """Prefetched records by path, their samples back as views of the shared buffer."""
    for _, item, rows in taken:
        if rows.stop > rows.start:
            item.signal = signals[rows]
    return {path: item for path, item, _ in taken}


def _predict_chunk(paths: Sequence[str]) -> list[Predicted | Failed]:
    """Worker with its own copy of the model (CPU): read, prepare and predict a chunk of records
    in one batch, so each process uses its core end to end and only small results cross the
    pipe. Returns Predicted or Failed per path, in order."""
    st = worker_state()
    predictor, spec, opts, ready = st["predictor"], st["spec"], st["opts"], st["prepared"]
    items: list[Any] = []
    for p in paths:
        x = ready.pop(p, None)
        x = prepare_job(p) if x is None else x
        items.append(predict_long(x, spec, opts, predictor) if isinstance(x, Long) else x)
    return through_model(predictor, items)


def through_model(predictor: Predictor, items: Sequence[Any]) -> list[Predicted | Failed]:
    """Every prepared record among `items` through the model in one batch, as Predicted (its
    samples dropped); Failed and Predicted items pass as they are, in order."""
    ready = [x for x in items if not isinstance(x, (Failed, Predicted))]
    out = predictor(_stack(ready, predictor)) if ready else None
    results: list[Predicted | Failed] = []
    start = 0
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


def predict_long(long: Long, spec: PreprocessSpec, opts: PredictOptions,
                 predictor: Predictor) -> Predicted | Failed:
    """A long record block by block through the model: only the per-window outputs and beat
    indices are kept (a 24 h Holter's samples never sit in memory as windows); heart rate,
    beats and quality are the whole record's. A failure is a Failed row (the run goes on)."""

    def job() -> Predicted:
        record = long.record if long.record is not None else read_record(
            long.path, fs=opts.fs, lead_names=opts.lead_names)
        long.record = None  # the blocks hold what is needed of it
        blocks, outs = [], []
        for block in prepare_chunks(record, spec, lead_map=opts.lead_map):
            outs.append(predictor(_stack([block], predictor)))
            block.signal, block.rr = _emptied(block.signal), _emptied(block.rr)
            blocks.append(block)
        del record
        prepared = join_blocks(blocks, spec)
        prepared.path = str(long.path)
        return Predicted(prepared, WindowOutputs.concat(outs))

    return guarded(long.path, job)


def _emptied(a: np.ndarray) -> np.ndarray:
    """A new 0-row array shaped like `a` (a slice `a[:0]` would keep all of `a` alive)."""
    return np.empty((0, *a.shape[1:]), a.dtype)


def _stack(items: Sequence[Prepared], predictor: Predictor) -> dict[str, np.ndarray]:
    """The model batch of `items`; with the beat head, the record context beside (each item its
    own record: one record, or one block of a long one)."""
    out = {k: np.concatenate([getattr(p, k) for p in items]) for k in BATCH_KEYS}
    head = predictor.beat_head
    if head is not None:
        starts = np.concatenate([p.window_start_s for p in items])
        record = np.repeat(np.arange(len(items)), [len(p.n_valid) for p in items])
        out["beat_context"] = record_context(out["signal"], out["rpeaks"], out["rr"], starts,
                                             head.config.fs, record)
    return out


def model_threads(opts: PredictOptions) -> int:
    """CPU inference in the main process: half the cores run the model, the other half read
    and prepare records (the two cost about the same per record); with --workers 1 nothing
    else runs beside the model, so it gets them all."""
    return default_workers() if opts.workers == 1 else max(1, default_workers() // 2)


def models_in_workers(opts: PredictOptions, n_records: int) -> bool:
    """On CPU, each worker process runs its own model on its own records (read, prepare,
    predict), unless --workers 1 or the folder fits in one batch: no process waits for
    another. With one model in the main process, that process was the bottleneck (its model
    alone needs ~3.5 ms per record) while the readers idled a quarter of the time."""
    return (on_cpu(opts) and opts.workers != 1
            and (opts.workers or default_workers()) > 1 and n_records > opts.batch_size)


def prepared_stream(paths: Sequence[str], spec: PreprocessSpec, opts: PredictOptions,
                    predictor: Predictor | None = None,
                    prepared: dict[str, Any] | None = None) -> Iterator[Any]:
    """Records in input order from worker processes: Predicted by the workers' copies of
    `predictor` when given (forked after it loaded: no worker imports torch or reads the
    weights again; records already in `prepared` are not read again), else prepared (or
    Long, or Failed) for the main process's model. Up to _AHEAD chunks wait, so the readers
    keep going through the main process's start-up."""
    if predictor is not None:
        workers = opts.workers or default_workers()
        return ordered_map(_predict_chunk, paths, workers=workers, chunk=opts.batch_size,
                           state={"spec": spec, "opts": opts, "predictor": predictor,
                                  "prepared": prepared or {}},
                           pool=True, max_pending=max(_AHEAD, 4 * workers), whole_chunks=True)
    auto = default_workers() - (model_threads(opts) if on_cpu(opts) else 0)
    workers = max(1, min(opts.workers or auto, len(paths) // _CHUNK + 1))
    return ordered_map(prepare_job, paths, workers=workers, chunk=_CHUNK,
                       state={"spec": spec, "opts": opts}, pool=opts.workers != 1,
                       max_pending=max(_AHEAD, 4 * workers))
