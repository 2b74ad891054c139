"""The on-disk dataset made by `preprocess`: memory-mapped arrays plus an index Parquet.

Written streaming (constant memory, N unknown up front) into `<path>.tmp-<pid>` and renamed
into place on close, so a killed run never leaves a half dataset under the final name.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import numpy as np

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.outputs import check_dataset_target
from ecgmoe_cli.signal.spec import PreprocessSpec

_HEADER_BYTES = 128  # reserved .npy header, rewritten with the final shape on close
_INDEX_ROWS_PER_GROUP = 4096  # index rows buffered before a Parquet row group is written
_INDEX_FIELDS = {  # fixed columns of index.parquet (the y_* target columns follow)
    "path": "string", "record": "string", "window": "int64", "row": "int64",
    "status": "string", "error": "string", "fs_in": "float64", "duration_s": "float64",
    "leads_used": "string", "heart_rate_bpm": "float64", "n_beats": "int64",
    "quality": "float64", "fold": "int64", "window_start_s": "float64",
}


def _array_layout(spec: PreprocessSpec) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """Array name -> (dtype on disk, per-row shape)."""
    n_leads, w, k = len(spec.leads), spec.window_samples, spec.max_beats
    return {
        "signals": (np.dtype("<f2"), (n_leads, w)),
        "lead_mask": (np.dtype("bool"), (n_leads,)),
        "n_valid": (np.dtype("<i4"), ()),
        "rpeaks": (np.dtype("<i4"), (k,)),
        "rr": (np.dtype("<f4"), (k, 4)),
    }


class PreparedLike(Protocol):
    """What the writer reads from `prepare.Prepared` (duck-typed so tests can fake it)."""

    path: Any
    record: str
    fs_in: float
    duration_s: float
    leads_used: list[str]
    signal: np.ndarray
    lead_mask: np.ndarray
    n_valid: np.ndarray
    rpeaks: np.ndarray
    rr: np.ndarray
    heart_rate_bpm: float
    n_beats: int
    quality: float
    window_quality: np.ndarray  # (nw,): the index's `quality` is each window's


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """A version 1.0 .npy header padded to exactly _HEADER_BYTES (so it can be rewritten)."""
    d = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    text = repr(d).encode("latin1")
    pad = _HEADER_BYTES - 10 - len(text) - 1
    if pad < 0:
        raise EcgMoeError(f"array shape {shape} too large for the .npy header")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", _HEADER_BYTES - 10) + text + b" " * pad + b"\n"


class _NpyAppender:
    """Appends rows to a .npy file; the header's row count is fixed up on close."""

    def __init__(self, path: Path, dtype: np.dtype, row_shape: tuple[int, ...]) -> None:
        self.path, self.dtype, self.row_shape, self.n = path, dtype, row_shape, 0
        self._f = open(path, "wb")  # noqa: SIM115 (open until close(): rows stream in)
        self._f.write(_npy_header(dtype, (0, *row_shape)))

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.row_shape:
            raise EcgMoeError(f"array rows have shape {rows.shape[1:]}, expected {self.row_shape}",
                              self.path)
        self._f.write(rows.tobytes())
        self.n += rows.shape[0]

    def close(self) -> None:
        self._f.seek(0)
        self._f.write(_npy_header(self.dtype, (self.n, *self.row_shape)))
        self._f.close()

    def abort(self) -> None:
        self._f.close()


def task_to_json(task: Any) -> str | dict[str, Any]:
    """Built-in tasks are stored by name, user tasks as their full dict."""
    from ecgmoe_cli.tasks import TASKS, task_to_dict

    return str(task.name) if TASKS.get(task.name) == task else task_to_dict(task)


def task_from_json(item: str | dict[str, Any]) -> Any:
    from ecgmoe_cli.tasks import get_task, task_from_dict

    return get_task(item) if isinstance(item, str) else task_from_dict(item)


class DatasetWriter:
    """Context manager: `add` prepared records, then the dataset appears atomically on exit."""

    def __init__(self, path: str | Path, spec: PreprocessSpec, tasks: Sequence[Any],
                 overwrite: bool = False) -> None:
        self.path = Path(path)
        check_dataset_target(self.path, overwrite=overwrite)
        self.spec, self.tasks, self.overwrite = spec, list(tasks), overwrite
        self.tmp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
        self._rows: list[dict[str, Any]] = []
        self._arrays: dict[str, _NpyAppender] = {}
        self._index: Any = None  # pyarrow ParquetWriter, opened in __enter__
        self._n = 0
        self._targets = [c for t in self.tasks for c in t.columns()]

    def _schema(self) -> Any:
        import pyarrow as pa

        fields = [(k, pa.type_for_alias(v)) for k, v in _INDEX_FIELDS.items()]
        return pa.schema(fields + [(c, pa.float64()) for c in self._targets])

    def __enter__(self) -> DatasetWriter:  # noqa: PYI034 (py3.10: no typing.Self)
        import pyarrow.parquet as pq

        try:
            if self.tmp.exists():
                shutil.rmtree(self.tmp)
            self.tmp.mkdir(parents=True)
            self._arrays = {name: _NpyAppender(self.tmp / f"{name}.npy", dt, shape)
                            for name, (dt, shape) in _array_layout(self.spec).items()}
            self._index = pq.ParquetWriter(self.tmp / "index.parquet", self._schema())
        except OSError as e:  # e.g. /proc, a read-only folder: one line, no half folder
            self.__exit__(OSError, e, None)
        return self

    def _append_row(self, row: dict[str, Any]) -> None:
        unknown = sorted(set(row) - set(_INDEX_FIELDS) - set(self._targets))
        if unknown:
            raise EcgMoeError(f"index fields {unknown} are neither index columns nor target "
                              "columns of the dataset's tasks", row.get("path"))
        self._rows.append(row)
        if len(self._rows) >= _INDEX_ROWS_PER_GROUP:
            self._flush_index()

    def _flush_index(self) -> None:
        from ecgmoe_cli.io.arrow_table import rows_to_table

        if self._rows:
            self._index.write_table(rows_to_table(self._rows, self._schema()))
            self._rows = []

    def add(self, prepared: PreparedLike, labels: Sequence[dict[str, float]], fold: int) -> None:
        """Append every window of one record; `labels` holds one target dict per window."""
        nw = prepared.signal.shape[0]
        if len(labels) != nw:
            raise EcgMoeError(f"{len(labels)} label dicts for {nw} windows", prepared.path)
        for name, arr in (("signals", prepared.signal), ("lead_mask", prepared.lead_mask),
                          ("n_valid", prepared.n_valid), ("rpeaks", prepared.rpeaks),
                          ("rr", prepared.rr)):
            self._arrays[name].append(np.asarray(arr))
        starts = getattr(prepared, "window_start_s", np.zeros(nw))
        first = int(getattr(prepared, "first_window", 0))  # a later block of a long record
        for w in range(nw):
            row = {
                "path": str(prepared.path), "record": str(prepared.record), "window": first + w,
                "row": self._n + w, "status": "ok", "error": "",
                "fs_in": float(prepared.fs_in), "duration_s": float(prepared.duration_s),
                "leads_used": ",".join(prepared.leads_used),
                "heart_rate_bpm": float(prepared.heart_rate_bpm),
                "n_beats": int(prepared.n_beats), "quality": float(prepared.window_quality[w]),
                "fold": int(fold), "window_start_s": float(starts[w]),
            }
            row.update({k: float(v) for k, v in labels[w].items()})
            self._append_row(row)
        self._n += nw

    def add_error(self, path: str | Path, record: str, error: str, **fields: Any) -> None:
        """Record a file that could not be prepared (row -1) so the index explains every input."""
        row: dict[str, Any] = {"path": str(path), "record": record, "window": -1, "row": -1,
                               "status": "error", "error": error, "fold": -1}
        row.update(fields)
        self._append_row(row)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            for a in self._arrays.values():
                a.abort()
            if self._index is not None:
                self._index.close()
            shutil.rmtree(self.tmp, ignore_errors=True)
            if isinstance(exc, OSError):  # a full disk: one line, the temporary folder gone
                raise EcgMoeError(f"cannot write the dataset ({exc.strerror or exc})",
                                  self.path) from None
            return
        try:
            for a in self._arrays.values():
                a.close()
            self._flush_index()
            self._index.close()
            (self.tmp / "spec.json").write_text(self.spec.to_json())
            (self.tmp / "tasks.json").write_text(
                json.dumps([task_to_json(t) for t in self.tasks], indent=1))
            self._commit()
        except OSError as e:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise EcgMoeError(f"cannot write the dataset ({e.strerror or e})", self.path) from None
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise

    def _commit(self) -> None:
        if self.path.exists():
            if not self.overwrite:
                raise EcgMoeError("output appeared while writing; not replaced", self.path)
            old = self.path.with_name(f"{self.path.name}.old-{os.getpid()}")
            os.replace(self.path, old)
            os.replace(self.tmp, self.path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.tmp, self.path)


def write_dataset(path: str | Path, spec: PreprocessSpec, tasks: Sequence[Any],
                  items: Iterable[tuple[PreparedLike, Sequence[dict[str, float]], int]],
                  overwrite: bool = False) -> Path:
    """Write (prepared, labels, fold) items in one go; see DatasetWriter for streaming."""
    with DatasetWriter(path, spec, tasks, overwrite=overwrite) as w:
        for prepared, labels, fold in items:
            w.add(prepared, labels, fold)
    return Path(path)


class Dataset:
    """A dataset opened read-only: arrays are memmaps, targets are looked up by row."""

    def __init__(self, path: Path, spec: PreprocessSpec, tasks: list[Any], index: Any,
                 arrays: dict[str, np.ndarray]) -> None:
        self.path, self.spec, self.tasks, self.index, self.arrays = path, spec, tasks, index, arrays
        ok = index[index["status"] == "ok"]
        self._ok_rows = ok["row"].to_numpy(np.int64)
        self._fold = np.full(len(self), -1, np.int64)
        self._fold[self._ok_rows] = ok["fold"].to_numpy(np.int64)
        self._y: dict[str, np.ndarray] = {}
        for c in (c for c in index.columns if c.startswith("y_")):
            col = np.full(len(self), np.nan)
            col[self._ok_rows] = ok[c].to_numpy(np.float64)
            self._y[c] = col

    def __len__(self) -> int:
        return int(self.arrays["signals"].shape[0])

    def rows(self, fold: int | Sequence[int] | None = None, status: str = "ok") -> np.ndarray:
        """Array rows (sorted) of windows in `fold` (one or several; None = all)."""
        if status != "ok":
            raise EcgMoeError(f"only status 'ok' windows have array rows, not {status!r}")
        rows = np.sort(self._ok_rows)
        if fold is None:
            return rows
        folds = [fold] if isinstance(fold, (int, np.integer)) else list(fold)
        return rows[np.isin(self._fold[rows], folds)]

    def has_columns(self, task: Any) -> bool:
        return all(c in self._y for c in task.columns())

    def batch(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The model batch of INTERFACES.md for these rows (NumPy; the loop makes tensors)."""
        rows = np.asarray(rows, np.int64)
        order = np.argsort(rows, kind="stable")  # sorted reads are sequential on disk
        inv = np.empty_like(order)
        inv[order] = np.arange(len(order))
        srt = rows[order]
        a = self.arrays
        return {
            "signal": a["signals"][srt].astype(np.float32)[inv],
            "lead_mask": a["lead_mask"][srt][inv],
            "n_valid": a["n_valid"][srt].astype(np.int64)[inv],
            "rpeaks": a["rpeaks"][srt].astype(np.int64)[inv],
            "rr": np.asarray(a["rr"][srt], np.float32)[inv],
        }

    def column(self, name: str, rows: np.ndarray) -> np.ndarray:
        if name not in self._y:
            raise EcgMoeError(f"dataset has no target column {name!r}", self.path)
        return self._y[name][np.asarray(rows, np.int64)]

    def targets(self, rows: np.ndarray, tasks: Sequence[Any]) -> dict[str, np.ndarray]:
        """Per task: (B, labels) for binary/multilabel, (B,) otherwise; NaN = unknown."""
        out: dict[str, np.ndarray] = {}
        for t in tasks:
            cols = [self.column(c, rows) for c in t.columns()]
            if t.kind in ("binary", "multilabel"):
                out[t.name] = np.stack(cols, axis=1).astype(np.float32)
            else:
                out[t.name] = cols[0].astype(np.float32)
        return out


def open_dataset(path: str | Path) -> Dataset:
    """Open a dataset written by DatasetWriter; a missing or damaged one raises EcgMoeError."""
    import pandas as pd

    path = Path(path)
    if not path.is_dir():
        raise EcgMoeError("dataset not found (make one with `ecgmoe preprocess`)", path)
    if not (path / "spec.json").is_file():  # e.g. a folder of records
        raise EcgMoeError("not a dataset (no spec.json): run `ecgmoe preprocess` first, e.g. "
                          f"`ecgmoe preprocess {path} -o {path.name}-ds`", path)
    try:
        spec = PreprocessSpec.from_json((path / "spec.json").read_text())
        tasks = [task_from_json(t) for t in json.loads((path / "tasks.json").read_text())]
        index = pd.read_parquet(path / "index.parquet")
    except EcgMoeError as e:  # a bad spec or task: say which dataset holds it
        raise EcgMoeError(str(e), path) from None
    except Exception as e:  # noqa: BLE001 (missing file, bad JSON or Parquet: one line)
        raise EcgMoeError(f"not a readable dataset ({type(e).__name__}: {e})", path) from None
    arrays: dict[str, np.ndarray] = {}
    n = None
    for name, (dtype, shape) in _array_layout(spec).items():
        f = path / f"{name}.npy"
        try:
            arr = np.load(f, mmap_mode="r")
        except Exception as e:  # noqa: BLE001 (numpy raises several types for a bad .npy)
            raise EcgMoeError(f"cannot read array ({e})", f) from None
        if arr.dtype != dtype or arr.shape[1:] != shape or (n is not None and arr.shape[0] != n):
            raise EcgMoeError(f"array has dtype {arr.dtype} shape {arr.shape}, expected "
                              f"{dtype} (N, {', '.join(map(str, shape))})", f)
        n = arr.shape[0]
        arrays[name] = arr
    missing = [c for c in _INDEX_FIELDS if c not in index.columns]
    if missing:
        raise EcgMoeError(f"index.parquet lacks columns {missing}", path)
    ok_rows = index.loc[index["status"] == "ok", "row"].to_numpy()
    if len(ok_rows) != n or (n and not np.array_equal(np.sort(ok_rows), np.arange(n))):
        raise EcgMoeError(f"index.parquet lists {len(ok_rows)} windows but arrays hold {n}", path)
    return Dataset(path, spec, tasks, index, arrays)


class _Stacked:
    """Row-indexable view over several arrays stacked on axis 0 (no copy until indexed)."""

    def __init__(self, parts: Sequence[np.ndarray]) -> None:
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [p.shape[0] for p in self.parts])
        self.shape = (int(self.offsets[-1]), *self.parts[0].shape[1:])
        self.dtype = self.parts[0].dtype

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, np.int64)
        part = np.searchsorted(self.offsets, rows, side="right") - 1
        out = np.empty((len(rows), *self.shape[1:]), self.dtype)
        for i, p in enumerate(self.parts):
            sel = part == i
            if sel.any():
                out[sel] = p[rows[sel] - self.offsets[i]]
        return out


def open_datasets(paths: Sequence[str | Path]) -> Dataset:
    """Several datasets made with the same spec, read as one (rows renumbered in order).

    Lets `train`/`finetune` mix corpora, e.g. the synthetic corpus with real AF episodes;
    a target column one dataset lacks is unknown (NaN) for its windows.
    """
    import pandas as pd

    parts = [open_dataset(p) for p in paths]
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    for d in parts[1:]:
        if d.spec != first.spec:
            raise EcgMoeError(f"preprocessed with spec {d.spec.hash()}, but {first.path} with "
                              f"{first.spec.hash()}; re-run preprocess with one spec", d.path)
    tasks: dict[str, Any] = {}
    for d in parts:
        for t in d.tasks:
            if t.name in tasks and tasks[t.name] != t:
                raise EcgMoeError(f"task {t.name!r} differs between datasets", d.path)
            tasks.setdefault(t.name, t)
    indexes, offset = [], 0
    for d in parts:
        idx = d.index.copy()
        ok = idx["status"] == "ok"
        idx.loc[ok, "row"] = idx.loc[ok, "row"] + offset
        indexes.append(idx)
        offset += len(d)
    index = pd.concat(indexes, ignore_index=True)
    arrays = {k: _Stacked([d.arrays[k] for d in parts]) for k in first.arrays}
    return Dataset(first.path, first.spec, list(tasks.values()), index, arrays)  # type: ignore[arg-type]
