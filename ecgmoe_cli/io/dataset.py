"""The on-disk dataset made by `preprocess`: memory-mapped arrays plus an index Parquet, its
layout and its reader (dataset_writer.py writes it)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.signal.spec import PreprocessSpec

INDEX_FIELDS = {  # fixed columns of index.parquet (the y_* target columns follow)
    "path": "string", "record": "string", "window": "int64", "row": "int64",
    "status": "string", "error": "string", "fs_in": "float64", "duration_s": "float64",
    "leads_used": "string", "heart_rate_bpm": "float64", "n_beats": "int64",
    "quality": "float64", "fold": "int64", "window_start_s": "float64",
}


def array_layout(spec: PreprocessSpec) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """Array name -> (dtype on disk, per-row shape)."""
    n_leads, w, k = len(spec.leads), spec.window_samples, spec.max_beats
    return {
        "signals": (np.dtype("<f2"), (n_leads, w)),
        "lead_mask": (np.dtype("bool"), (n_leads,)),
        "n_valid": (np.dtype("<i4"), ()),
        "rpeaks": (np.dtype("<i4"), (k,)),
        "rr": (np.dtype("<f4"), (k, 4)),
    }


def task_to_json(task: Any) -> str | dict[str, Any]:
    """Built-in tasks are stored by name, user tasks as their full dict."""
    from ecgmoe_cli.tasks import TASKS, task_to_dict

    return str(task.name) if TASKS.get(task.name) == task else task_to_dict(task)


def task_from_json(item: str | dict[str, Any]) -> Any:
    from ecgmoe_cli.tasks import get_task, task_from_dict

    return get_task(item) if isinstance(item, str) else task_from_dict(item)


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

    def read(self, rows: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        """The named arrays at `rows`, in the order of `rows` (read sorted: sequential on disk)."""
        rows = np.asarray(rows, np.int64)
        order = np.argsort(rows, kind="stable")
        inv = np.empty_like(order)
        inv[order] = np.arange(len(order))
        srt = rows[order]
        return {k: np.asarray(self.arrays[k][srt])[inv] for k in names}

    def batch(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The model batch of INTERFACES.md for these rows (NumPy; the loop makes tensors)."""
        a = self.read(rows, ("signals", "lead_mask", "n_valid", "rpeaks", "rr"))
        return {
            "signal": a["signals"].astype(np.float32),
            "lead_mask": a["lead_mask"],
            "n_valid": a["n_valid"].astype(np.int64),
            "rpeaks": a["rpeaks"].astype(np.int64),
            "rr": a["rr"].astype(np.float32),
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
    for name, (dtype, shape) in array_layout(spec).items():
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
    missing = [c for c in INDEX_FIELDS if c not in index.columns]
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
