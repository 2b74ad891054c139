"""The work behind `ecgmoe preprocess`: discover, prepare in worker processes, label, write.

Workers read and prepare each record and compute its labels from the same in-memory Record,
so no file is read twice; the parent only writes, in input order (deterministic output).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.dataset_writer import DatasetWriter
from ecgmoe_cli.io.files import safe_text
from ecgmoe_cli.io.records.read import read_record
from ecgmoe_cli.io.records.record import Record, check_fs_option
from ecgmoe_cli.pipeline.outcomes import Done, Failed, Long, guarded
from ecgmoe_cli.pipeline.parallel import default_workers, ordered_map, worker_state
from ecgmoe_cli.pipeline.prepare import (  # imported before the fork: workers share them
    CHUNK_S,
    Prepared,
    prepare_chunks,
    prepare_from_record,
)
from ecgmoe_cli.progress import Progress
from ecgmoe_cli.signal.beats import heart_rate_bpm
from ecgmoe_cli.signal.spec import PreprocessSpec

_CHUNK = 16  # records per worker task: amortises inter-process overhead
_SHOW_ERRORS = 5  # error lines printed in the summary


@dataclass(frozen=True)
class PreprocessOptions:
    labels: str = "auto"
    workers: int = 0  # 0 = one per core
    fs: float | None = None
    lead_names: list[str] | None = None
    lead_map: dict[str, str] | None = None
    overwrite: bool = False


def _job(path: Path) -> Done | Long | Failed:
    """Worker: read, prepare and label one record; every failure becomes a Failed row."""
    st = worker_state()
    spec: PreprocessSpec = st["spec"]
    opts: PreprocessOptions = st["opts"]

    def job() -> Done | Long:
        record = read_record(path, fs=opts.fs, lead_names=opts.lead_names)
        if record.duration_s > CHUNK_S:
            return Long(path, record)
        return _labelled(record, prepare_from_record(record, spec, lead_map=opts.lead_map),
                         st["source"], spec)

    return guarded(path, job)


def _labelled(record: Record, prepared: Prepared, source: Any, spec: PreprocessSpec) -> Done:
    """Attach per-window labels and the fold; the signal goes back as float16 (the dataset's
    dtype), half the bytes through the pipe."""
    base = source.labels_for(record)
    labels = []
    for start in prepared.window_start_s:
        row = dict(base)
        row.update(source.window_labels(record, float(start), spec.window_s))
        labels.append(row)
    prepared.signal = prepared.signal.astype(np.float16)
    return Done(prepared, labels, int(source.fold_for(record)))


def index_rows(prepared: Prepared, labels: Sequence[dict[str, float]], fold: int,
               first_row: int) -> list[dict[str, Any]]:
    """The dataset's index rows of one record's (or block's) windows, the first at array row
    `first_row`; `labels` holds one target dict per window."""
    nw = len(prepared.n_valid)
    if len(labels) != nw:
        raise EcgMoeError(f"{len(labels)} label dicts for {nw} windows", prepared.path)
    rows = []
    for w in range(nw):
        row = {
            "path": safe_text(str(prepared.path)), "record": safe_text(prepared.record),
            "window": prepared.first_window + w, "row": first_row + w, "status": "ok",
            "error": "", "fs_in": float(prepared.fs_in),
            "duration_s": float(prepared.duration_s), "leads_used": ",".join(prepared.leads_used),
            "heart_rate_bpm": float(prepared.heart_rate_bpm), "n_beats": int(prepared.n_beats),
            "quality": float(prepared.window_quality[w]), "fold": int(fold),
            "window_start_s": float(prepared.window_start_s[w]),
        }
        row.update({k: float(v) for k, v in labels[w].items()})
        rows.append(row)
    return rows


def add_windows(writer: DatasetWriter, done: Done) -> list[dict[str, Any]]:
    """Append a labelled record's (or block's) windows; returns their index rows, for the
    caller to add (a long record's wait for its whole-record heart rate)."""
    p = done.prepared
    first = writer.add_windows({"signals": p.signal, "lead_mask": p.lead_mask,
                                "n_valid": p.n_valid, "rpeaks": p.rpeaks, "rr": p.rr})
    return index_rows(p, done.labels, done.fold, first)


def add_record(writer: DatasetWriter, prepared: Prepared, labels: Sequence[dict[str, float]],
               fold: int) -> None:
    """Append every window of one record with its index rows."""
    writer.add_rows(add_windows(writer, Done(prepared, list(labels), fold)))


def _long_record(writer: DatasetWriter, long: Long, spec: PreprocessSpec,
                 opts: PreprocessOptions, source: Any) -> int:
    """A long record block by block (bounded memory), read and prepared once; a block where no
    lead is usable is still written (masked). Its index rows carry the whole record's
    heart_rate_bpm and n_beats, known once every block is through the detector: they wait
    (a few hundred bytes a window) while the blocks' arrays go to disk. Returns its windows."""
    record = (long.record if long.record is not None
              else read_record(long.path, fs=opts.fs, lead_names=opts.lead_names))
    rows: list[dict[str, Any]] = []
    peaks = []
    try:
        for block in prepare_chunks(record, spec, lead_map=opts.lead_map):
            peaks.append(block.record_rpeaks)
            rows += add_windows(writer, _labelled(record, block, source, spec))
    finally:  # even after a failure half-way, every window written has its index row
        whole = np.concatenate(peaks) if peaks else np.zeros(0, np.int64)
        rate, n_beats = heart_rate_bpm(whole, spec.fs), int(whole.size)
        for row in rows:
            row["heart_rate_bpm"], row["n_beats"] = rate, n_beats
        writer.add_rows(rows)
    return len(rows)


def preprocess_folder(root: Path, out: Path, spec: PreprocessSpec, opts: PreprocessOptions,
                      progress: bool = False) -> dict[str, Any]:
    """Write the dataset for every record under `root`; returns the run's summary."""
    from ecgmoe_cli.io.labels.detect import open_label_source
    from ecgmoe_cli.io.outputs import check_dataset_target, refuse_input_inside
    from ecgmoe_cli.io.records.discover import records_under

    t0 = time.perf_counter()
    root, out = Path(root), Path(out)
    check_fs_option(opts.fs)
    refuse_input_inside(out, [root])
    paths = records_under(root)
    check_dataset_target(out, overwrite=opts.overwrite)  # before any record is read
    source = open_label_source(root, opts.labels)
    workers = opts.workers or default_workers()
    workers = max(1, min(workers, len(paths) // _CHUNK + 1))
    ok = errors = windows = 0
    first_errors: list[str] = []
    state = {"spec": spec, "opts": opts, "source": source}
    with DatasetWriter(out, spec, source.tasks, overwrite=opts.overwrite) as writer, \
            Progress("preprocess", len(paths), progress and len(paths) > 1, unit="records") as bar:
        for item in ordered_map(_job, paths, workers=workers, chunk=_CHUNK, state=state):
            if isinstance(item, Long):  # prepared here, so only one block is ever in memory
                item = guarded(item.path, partial(_long_record, writer, item, spec, opts, source))
                if not isinstance(item, Failed):
                    windows += item
                    ok += 1
            if isinstance(item, Failed):
                writer.add_error(safe_text(item.path), safe_text(item.record), item.error)
                errors += 1
                if len(first_errors) < _SHOW_ERRORS:
                    first_errors.append(item.error)
            elif isinstance(item, Done):
                add_record(writer, item.prepared, item.labels, item.fold)
                ok += 1
                windows += len(item.prepared.n_valid)
            bar.update(advance=1)
    seconds = time.perf_counter() - t0
    return {
        "input": safe_text(str(root)), "output": safe_text(str(out)), "records": len(paths),
        "ok": ok, "errors": errors, "windows": windows, "seconds": round(seconds, 3),
        "records_per_s": round(len(paths) / seconds, 1) if seconds > 0 else 0.0,
        "workers": workers, "label_source": source.kind,
        "tasks": [t.name for t in source.tasks], "spec_hash": spec.hash(),
        "first_errors": first_errors,
    }
