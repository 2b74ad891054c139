"""Read, map, lay out and save: one record, or every flagged record of a predict report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.records.read import read_record
from ecgmoe_cli.io.records.record import Record
from ecgmoe_cli.plotting.page import build_page
from ecgmoe_cli.plotting.predictions import is_flagged, match_row, prediction_lines
from ecgmoe_cli.plotting.render import FORMATS, save_page
from ecgmoe_cli.signal.leads import canonicalize


@dataclass(frozen=True)
class PlotOptions:
    """How to draw: which 10 s window, file format and raster resolution, how to read leads."""

    window: int = 0  # 10 s window index, from 0
    fmt: str = "png"  # png | pdf | svg
    dpi: float = 200.0  # raster resolution; the physical size (mm) never changes
    lead_map: dict[str, str] | None = None  # file lead name -> canonical lead
    fs: float | None = None  # for files that do not store their rate (CSV, NPY)
    lead_names: list[str] | None = None  # for files that do not name their leads

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            raise EcgMoeError(f"--format must be one of {', '.join(FORMATS)}, not {self.fmt!r}")
        if not 20 <= self.dpi <= 1200:
            raise EcgMoeError(f"--dpi must be between 20 and 1200, not {self.dpi:g}")


def read_report(path: Path) -> list[dict[str, Any]]:
    """A predict report as a list of row dicts; a missing or unreadable file is the user's error."""
    import pandas as pd

    try:
        df = pd.read_parquet(path)
    except FileNotFoundError:
        raise EcgMoeError("report not found", path) from None
    except Exception as e:  # noqa: BLE001 - pyarrow raises many types for a non-Parquet file
        raise EcgMoeError(f"cannot read the report as Parquet ({type(e).__name__})", path) from None
    if "path" not in df.columns and "record" not in df.columns:
        raise EcgMoeError("not a predict report: no `path` or `record` column", path)
    return df.to_dict(orient="records")


def plot_record(path: Path, out: Path, opts: PlotOptions,
                report_rows: list[dict[str, Any]] | None = None) -> Path:
    """Draw one record to `out`; with report rows, the matching row's predictions go on top."""

    def lines(record: Record) -> list[str] | None:
        if report_rows is None:
            return None
        row = match_row(report_rows, Path(record.path), record.name, opts.window)
        return prediction_lines(row) if row else ["no row for this record in the report"]

    return _plot(path, out, opts, lines)


def _plot(path: Path, out: Path, opts: PlotOptions,
          lines: Callable[[Record], list[str] | None]) -> Path:
    record = read_record(path, fs=opts.fs, lead_names=opts.lead_names)
    mapping = canonicalize(record.lead_names, lead_map=opts.lead_map)
    page = build_page(record, mapping, window=opts.window, predictions=lines(record))
    try:
        return save_page(page, out, fmt=opts.fmt, dpi=opts.dpi)
    except OSError as e:
        raise EcgMoeError(f"cannot write the figure ({e.strerror or e})", out) from None


def plot_flagged(report: Path, out_dir: Path, opts: PlotOptions,
                 on_error: Callable[[EcgMoeError], None] | None = None) -> list[Path]:
    """Draw every flagged record of a report into out_dir (<record>.<fmt>, names made unique).

    A record that cannot be drawn is passed to `on_error` and skipped, so one bad file does not
    stop the batch; without `on_error` it raises.
    """
    rows = read_report(report)
    flagged = [r for r in rows if is_flagged(r)]
    written: list[Path] = []
    used: set[str] = set()
    for row in flagged:
        try:
            src = _record_path(row, report)
        except (ValueError, OSError) as e:  # a NUL byte, a name too long for the system
            if on_error is None:
                raise EcgMoeError(f"bad record path in the report ({e})", report) from None
            on_error(EcgMoeError(f"bad record path {str(row.get('path'))[:80]!r} in the "
                                 f"report ({e})", report))
            continue
        stem = safe_stem(str(row.get("record") or src.stem))
        row_opts = opts
        if row.get("window") is not None:  # a report listing windows: draw the flagged one
            row_opts = replace(opts, window=int(row["window"]))
            stem = f"{stem}_w{row_opts.window}"
        name, k = stem, 1
        while name in used:
            k += 1
            name = f"{stem}_{k}"
        used.add(name)
        try:
            written.append(_plot(src, out_dir / f"{name}.{opts.fmt}", row_opts,
                                 _const(prediction_lines(row))))
        except EcgMoeError as e:
            if on_error is None:
                raise
            on_error(e)
    return written


def safe_stem(name: str) -> str:
    """A report's `record` as a file name inside -o: no folder part ('../../x', '/abs/x'),
    no NUL or control character, no leading dot; 'record' when nothing is left."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c if c.isprintable() else "_" for c in base).lstrip(".")
    return base[:200] or "record"


def _const(lines: list[str]) -> Callable[[Record], list[str] | None]:
    return lambda _record: lines


def _record_path(row: dict[str, Any], report: Path) -> Path:
    """The row's record file: as written, else relative to the report's folder."""
    text = str(row.get("path") or row.get("record"))
    if "\0" in text:
        raise ValueError("it holds a NUL byte")
    p = Path(text)
    if not p.is_absolute() and not p.exists() and (report.parent / p).exists():
        return report.parent / p
    return p
