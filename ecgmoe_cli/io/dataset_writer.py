"""Writing the dataset of `preprocess` (format: dataset.py): streaming, in constant memory with
N unknown up front, into `<path>.tmp-<pid>`, renamed into place on close, so a killed run never
leaves a half dataset under the final name."""

from __future__ import annotations

import json
import os
import shutil
import struct
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.dataset import INDEX_FIELDS, array_layout, task_to_json
from ecgmoe_cli.io.outputs import check_dataset_target
from ecgmoe_cli.signal.spec import PreprocessSpec

_HEADER_BYTES = 128  # reserved .npy header, rewritten with the final shape on close
_INDEX_ROWS_PER_GROUP = 4096  # index rows buffered before a Parquet row group is written


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


class DatasetWriter:
    """Context manager: `add_windows` and `add_rows` for each record, `add_error` for a failed
    one; the dataset appears atomically on exit."""

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

        fields = [(k, pa.type_for_alias(v)) for k, v in INDEX_FIELDS.items()]
        return pa.schema(fields + [(c, pa.float64()) for c in self._targets])

    def __enter__(self) -> DatasetWriter:  # noqa: PYI034 (py3.10: no typing.Self)
        import pyarrow.parquet as pq

        try:
            if self.tmp.exists():
                shutil.rmtree(self.tmp)
            self.tmp.mkdir(parents=True)
            self._arrays = {name: _NpyAppender(self.tmp / f"{name}.npy", dt, shape)
                            for name, (dt, shape) in array_layout(self.spec).items()}
            self._index = pq.ParquetWriter(self.tmp / "index.parquet", self._schema())
        except OSError as e:  # e.g. /proc, a read-only folder: one line, no half folder
            self.__exit__(OSError, e, None)
        return self

    def _append_row(self, row: dict[str, Any]) -> None:
        unknown = sorted(set(row) - set(INDEX_FIELDS) - set(self._targets))
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

    def add_windows(self, arrays: Mapping[str, np.ndarray]) -> int:
        """Append one record's (or block's) windows, by array name (`array_layout`); returns the
        array row of the first. Their index rows follow with `add_rows`."""
        first = self._n
        for name, appender in self._arrays.items():
            appender.append(np.asarray(arrays[name]))
        self._n += len(arrays["n_valid"])
        return first

    def add_rows(self, rows: Iterable[dict[str, Any]]) -> None:
        """Index rows of windows already added (`row` set to their array row)."""
        for row in rows:
            self._append_row(row)

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
