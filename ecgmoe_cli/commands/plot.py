"""`ecgmoe plot`: a record drawn as a printed 12-lead ECG (3 x 4 + rhythm strip, 25 mm/s)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ecgmoe_cli.commands.common import console, err_console
from ecgmoe_cli.errors import EcgMoeError

_FORMATS = ("png", "pdf", "svg")


def _format(output: Path, fmt: str | None, is_dir: bool = False) -> str:
    """--format, else the output's extension, else png; another extension (x.jpg) is refused
    rather than filled with PNG bytes."""
    suffix = output.suffix.lower().lstrip(".")
    if suffix and suffix not in _FORMATS and not is_dir:
        raise EcgMoeError(f".{suffix} is not a format plot writes ({', '.join(_FORMATS)})",
                          output)
    if fmt is None:
        return suffix if suffix in _FORMATS else "png"
    fmt = fmt.lower()
    if fmt not in _FORMATS:
        raise typer.BadParameter(f"{fmt!r} is not one of {', '.join(_FORMATS)}",
                                 param_hint="--format")
    if suffix in _FORMATS and suffix != fmt:
        raise EcgMoeError(f"the output ends in .{suffix} but --format is {fmt}", output)
    return fmt


def _is_dir(output: Path, raw: str) -> bool:
    return output.is_dir() or raw.endswith(("/", "\\"))


def run(
    output: Annotated[str, typer.Option(
        "--output", "-o", help="Figure file (ecg.png), or a folder (dir/), always a folder for "
                               "a whole report.")],
    record: Annotated[Path | None, typer.Argument(
        metavar="RECORD", help="Record to draw (.hea, .edf, .bdf, .csv, .npy, DICOM ECG, "
             "aECG / MUSE / Philips .xml). Leave out with --report to draw every "
             "flagged record of the report.")] = None,
    weights: Annotated[Path | None, typer.Option(
        help="Weights folder: predict this record and print the labels in the header.")] = None,
    report: Annotated[Path | None, typer.Option(
        help="`ecgmoe predict` Parquet report: its row for the record goes in the header.")] = None,
    window: Annotated[int, typer.Option(
        min=0, help="Which 10 s window of a longer record to draw (0 = the first).")] = 0,
    fmt: Annotated[str | None, typer.Option(
        "--format", help="png, pdf or svg (default: from the output's extension, else png)."
    )] = None,
    lead_map: Annotated[list[str] | None, typer.Option(
        "--lead-map", help="NAME=LEAD: draw the file's lead NAME as LEAD (repeatable).")] = None,
    dpi: Annotated[float, typer.Option(
        help="Raster resolution; the sheet is 297 x 210 mm at any dpi.")] = 200.0,
    fs: Annotated[float | None, typer.Option(
        help="Sampling rate in Hz, for files that do not store one (CSV, NPY).")] = None,
) -> None:
    """Draw a record as a standard 12-lead ECG on grid paper (print at 100 %)."""
    from ecgmoe_cli.plotting.sheets import PlotOptions, plot_flagged, plot_record, read_report
    from ecgmoe_cli.signal.leads import parse_lead_map

    out = Path(output)
    if weights is not None and report is not None:
        raise EcgMoeError("give --weights or --report, not both")
    if weights is not None and record is None:
        raise EcgMoeError("--weights predicts one RECORD; give the record to draw")
    if record is not None and record.is_dir():
        raise EcgMoeError("is a folder: give one record to draw, or --report REPORT -o DIR "
                          "to draw a report's flagged records", record)
    opts = PlotOptions(window=window, fmt=_format(out, fmt, _is_dir(out, output)), dpi=dpi,
                       lead_map=parse_lead_map(lead_map) or None, fs=fs)
    if record is None:
        if report is None:
            raise EcgMoeError("nothing to draw: give a RECORD, or --report to draw its flagged "
                              "records")
        if out.suffix.lower().lstrip(".") in _FORMATS and not _is_dir(out, output):
            raise EcgMoeError("with --report and no RECORD, -o must be a folder", out)
        failed: list[str] = []

        def warn(e: EcgMoeError) -> None:
            failed.append(str(e))
            err_console.print(f"[yellow]skipped:[/] {e}", highlight=False, soft_wrap=True)

        written = plot_flagged(report, out, opts, on_error=warn)
        console.print(f"drew {len(written)} flagged record(s) into {out}"
                      + (f"; {len(failed)} could not be drawn" if failed else ""),
                      highlight=False, soft_wrap=True)
        if failed:
            raise typer.Exit(1)
        return
    if _is_dir(out, output):
        out = out / f"{record.stem}.{opts.fmt}"
    if weights is not None:
        rows = _predict(record, weights, opts.lead_map, fs)
    else:
        rows = read_report(report) if report is not None else None
    path = plot_record(record, out, opts, rows)
    console.print(f"wrote {path} (297 x 210 mm, {opts.dpi:g} dpi: print at 100 % for 25 mm/s, "
                  "10 mm/mV)", highlight=False, soft_wrap=True)


def _predict(record: Path, weights: Path, lead_map: dict[str, str] | None,
             fs: float | None) -> list[dict[str, object]]:
    """The record's report row, predicted in memory exactly as `ecgmoe predict` would."""
    from ecgmoe_cli.pipeline.predict.options import PredictOptions
    from ecgmoe_cli.pipeline.predict.run import predict_record

    row = predict_record(record, PredictOptions(weights=weights, lead_map=lead_map, fs=fs))
    if row.get("status") == "error":
        raise EcgMoeError(f"cannot predict: {row.get('error')}", record)
    return [row]
