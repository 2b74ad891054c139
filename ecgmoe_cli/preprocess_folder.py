"""The work behind `ecgmoe preprocess`: discover, prepare in worker processes, label, write.

Workers read and prepare each record and compute its labels from the same in-memory Record,
so no file is read twice; the parent only writes, in input order (deterministic output).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.records.read import read_record
from ecgmoe_cli.io.records.record import check_fs_option
from ecgmoe_cli.io.records.record import Record
from ecgmoe_cli.parallel import default_workers, ordered_map, worker_state
from ecgmoe_cli.progress import Progress
from ecgmoe_cli.prepare import (  # imported before the fork: workers share them
    CHUNK_S,
    Prepared,
    prepare_chunks,
    prepare_from_record,
)
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


@dataclass
class Done:
    """A prepared record with one label dict per window, ready for DatasetWriter.add."""

    prepared: Any
    labels: list[dict[str, float]]
    fold: int


@dataclass
class Long:
    """A record longer than one block: the parent prepares and writes it block by block."""

    path: Path


@dataclass
class Failed:
    path: str
    record: str
    error: str


def safe_text(text: str) -> str:
    """Text that Parquet can store: undecodable file-name bytes become U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def one_line(text: str) -> str:
    return safe_text(" ".join(str(text).split()))


def _job(path: Path) -> Done | Long | Failed:
    """Worker: read, prepare and label one record; every failure becomes a Failed row."""
    st = worker_state()
    spec: PreprocessSpec = st["spec"]
    opts: PreprocessOptions = st["opts"]
    source = st["source"]
    try:
        record = read_record(path, fs=opts.fs, lead_names=opts.lead_names)
        if record.duration_s > CHUNK_S:
            return Long(path)
        return _labelled(record, prepare_from_record(record, spec, lead_map=opts.lead_map),
                         source, spec)
    except EcgMoeError as e:
        return Failed(str(path), path.stem, one_line(str(e)))
    except Exception as e:  # noqa: BLE001 (one unforeseen file must not stop a long run)
        return Failed(str(path), path.stem, one_line(f"{path}: {type(e).__name__}: {e}"))


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


def _long_blocks(path: Path, spec: PreprocessSpec, opts: PreprocessOptions,
                 source: Any) -> Iterator[Done]:
    """A long record block by block (bounded memory); a block where no lead is usable is still
    written (masked). Its index rows carry the whole record's heart_rate_bpm and n_beats, which
    are only known once every block is through the detector: a first pass keeps just the
    R-peaks, the second writes the blocks."""
    record = read_record(path, fs=opts.fs, lead_names=opts.lead_names)
    peaks = [b.record_rpeaks for b in prepare_chunks(record, spec, lead_map=opts.lead_map)]
    whole = np.concatenate(peaks)
    rate, n_beats = heart_rate_bpm(whole, spec.fs), int(whole.size)
    for block in prepare_chunks(record, spec, lead_map=opts.lead_map):
        block.heart_rate_bpm, block.n_beats = rate, n_beats
        yield _labelled(record, block, source, spec)


def preprocess_folder(root: Path, out: Path, spec: PreprocessSpec, opts: PreprocessOptions,
                      progress: bool = False) -> dict[str, Any]:
    """Write the dataset for every record under `root`; returns the run's summary."""
    from ecgmoe_cli.io.dataset import DatasetWriter
    from ecgmoe_cli.io.records.discover import records_under
    from ecgmoe_cli.io.outputs import check_dataset_target, refuse_input_inside
    from ecgmoe_cli.io.labels.detect import open_label_source

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
                try:
                    for done in _long_blocks(item.path, spec, opts, source):
                        _write(writer, done)
                        windows += len(done.prepared.n_valid)
                    ok += 1
                except EcgMoeError as e:
                    item = Failed(str(item.path), item.path.stem, one_line(str(e)))
            if isinstance(item, Failed):
                writer.add_error(safe_text(item.path), safe_text(item.record), item.error)
                errors += 1
                if len(first_errors) < _SHOW_ERRORS:
                    first_errors.append(item.error)
            elif isinstance(item, Done):
                _write(writer, item)
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


def _write(writer: Any, done: Done) -> None:
    p = done.prepared
    p.path, p.record = safe_text(str(p.path)), safe_text(p.record)
    writer.add(p, done.labels, done.fold)
