"""CSV and NPY records: plain sample tables that carry no rate (--fs) and, for NPY and a CSV
without a header row, no lead names (--leads)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.records.record import Record, plausible_fs

_MAX_CSV_LINE = 1 << 16  # a CSV row holds one sample per lead: 64 KiB is thousands of columns
_TIME_COLUMNS = {"time", "t", "time_s", "seconds", "sample", "index", "timestamp"}


def _need(p: Path, fs: float | None, names: list[str] | None, what: str) -> float:
    if fs is None:
        raise EcgMoeError(f"{what} files carry no sampling rate: pass --fs (and --leads)", p)
    if not plausible_fs(fs):
        raise EcgMoeError(f"sampling rate {fs} Hz is not plausible", p)
    return float(fs)


def read_csv(p: Path, fs: float | None, lead_names: list[str] | None) -> Record:
    """Rows are samples, columns leads; a non-numeric first row names the leads."""
    fs_ = _need(p, fs, lead_names, "CSV")
    _check_csv_lines(p)
    text = p.read_bytes().decode("utf-8", errors="strict")
    if not text.strip():
        raise EcgMoeError("empty file", p)
    first = text.split("\n", 1)[0]
    dialect = ";" if first.count(";") > first.count(",") else ("\t" if "\t" in first else ",")
    head = next(csv.reader(io.StringIO(first), delimiter=dialect), [])
    header = [h.strip() for h in head]
    has_header = any(not _is_number(h) for h in header)
    body = text.split("\n", 1)[1] if has_header and "\n" in text else ("" if has_header else text)
    if not body.strip():
        raise EcgMoeError("CSV has a header row but no samples", p)
    try:
        data = np.loadtxt(io.StringIO(body), delimiter=dialect, dtype=np.float32, ndmin=2)
    except ValueError as e:
        raise EcgMoeError(f"CSV holds non-numeric samples ({e})", p) from None
    cols = list(range(data.shape[1]))
    if has_header:
        if len(header) != data.shape[1]:
            raise EcgMoeError(f"CSV header has {len(header)} names for {data.shape[1]} columns", p)
        cols = [i for i in cols if header[i].lower() not in _TIME_COLUMNS]
    names = [header[i] for i in cols] if has_header else lead_names
    if names is None:
        raise EcgMoeError("CSV has no header row naming the leads: pass --leads", p)
    if len(names) != len(cols):
        raise EcgMoeError(f"{len(names)} lead names for {len(cols)} CSV columns", p)
    sig = np.ascontiguousarray(data[:, cols].T)
    return Record(str(p), p.stem, sig, fs_, list(names), [],
                  {"format": "csv", "named_by_leads": not has_header})


def _check_csv_lines(p: Path) -> None:
    """Refuse a CSV with a line over _MAX_CSV_LINE bytes before parsing it: a 400 MB file on
    one line cost 11 GB in the parser. One pass in 1 MiB blocks, nothing kept."""
    run = 0  # bytes since the last newline
    with open(p, "rb") as f:
        while block := f.read(1 << 20):
            nl = np.flatnonzero(np.frombuffer(block, np.uint8) == 10)
            if nl.size == 0:
                run += len(block)
            else:
                longest = max(run + int(nl[0]), int(np.diff(nl).max(initial=1)) - 1)
                if longest > _MAX_CSV_LINE:
                    run = longest
                    break
                run = len(block) - int(nl[-1]) - 1
            if run > _MAX_CSV_LINE:
                break
    if run > _MAX_CSV_LINE:
        raise EcgMoeError(f"CSV has a line longer than {_MAX_CSV_LINE} bytes (a row holds one "
                          "sample per lead): not a record", p)


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return s.strip() == ""
    return True


def read_npy(p: Path, fs: float | None, lead_names: list[str] | None) -> Record:
    """A 2-D array, (leads, n) or (n, leads): the short axis is the leads."""
    fs_ = _need(p, fs, lead_names, "NPY")
    if not lead_names:
        raise EcgMoeError("NPY files carry no lead names: pass --leads", p)
    try:
        arr = np.load(p, allow_pickle=False)
    except ValueError as e:
        raise EcgMoeError(f"not a plain numeric .npy array ({e})", p) from None
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
        raise EcgMoeError(f"expected a 2-D numeric array, got {arr.dtype} {arr.shape}", p)
    if arr.shape[0] != len(lead_names) and arr.shape[1] == len(lead_names):
        arr = arr.T
    if arr.shape[0] != len(lead_names):
        raise EcgMoeError(f"{len(lead_names)} lead names for an array of shape {arr.shape}", p)
    return Record(str(p), p.stem, np.ascontiguousarray(arr, dtype=np.float32), fs_,
                  list(lead_names), [], {"format": "npy", "named_by_leads": True})
