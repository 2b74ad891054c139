"""`ecgmoe preprocess`: a folder of records -> a model-ready dataset (DESIGN.md, INTERFACES.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ecgmoe_cli.commands.common import console, err_console, split_list
from ecgmoe_cli.errors import EcgMoeError


def run(
    input: Annotated[Path, typer.Argument(
        metavar="INPUT", help="Folder of records (searched recursively) or one record file.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Dataset folder to write.")],
    labels: Annotated[str, typer.Option(
        help="Label source: auto, ptbxl, cinc, cinc2017 (REFERENCE.csv), mimic, csv "
             "(INPUT/labels.csv) or none.")] = "auto",
    workers: Annotated[int, typer.Option(
        min=0, help="Worker processes (0 = one per core).")] = 0,
    fs: Annotated[float | None, typer.Option(
        help="Sampling rate in Hz, for files that do not store one (CSV, NPY).")] = None,
    leads: Annotated[str | None, typer.Option(
        help="Leads to use, e.g. I,II,V1 (the rest masked, as evaluate --leads); they "
             "also name the columns of CSV/NPY files without a header row.")] = None,
    lead_map: Annotated[list[str] | None, typer.Option(
        "--lead-map", help="NAME=LEAD: read the file's channel NAME as lead LEAD, or NAME=none "
                           "to ignore it (repeatable).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing dataset.")] = False,
    strict: Annotated[bool, typer.Option(
        help="Exit with code 1 when any record failed (the dataset is still written).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Read every record under INPUT into a dataset of 10 s windows with labels and folds."""
    from ecgmoe_cli.pipeline.preprocess import PreprocessOptions, preprocess_folder
    from ecgmoe_cli.signal.leads import parse_lead_map
    from ecgmoe_cli.signal.spec import PreprocessSpec

    opts = PreprocessOptions(
        labels=labels, workers=workers, fs=fs,
        lead_names=split_list(leads) or None,
        lead_map=parse_lead_map(lead_map) or None, overwrite=overwrite)
    show = not quiet and not as_json
    summary = preprocess_folder(input, output, PreprocessSpec(), opts, progress=show)
    if as_json:
        print(json.dumps(summary, sort_keys=True))
    elif not quiet:
        _print_summary(summary, name_errors=not input.is_file())  # else the error line below
    if summary["errors"] and (strict or input.is_file()):  # one file that failed: the run did
        first = summary["first_errors"][0]
        raise EcgMoeError(first if input.is_file() else
                          f"{summary['errors']} of {summary['records']} records failed "
                          f"(--strict); first: {first}")


def _print_summary(s: dict[str, object], name_errors: bool = True) -> None:
    console.print(f"{s['records']} records: [green]{s['ok']} ok[/], "
                  f"{'[red]' if s['errors'] else ''}{s['errors']} errors"
                  f"{'[/]' if s['errors'] else ''}"
                  f", {s['windows']} windows in {s['seconds']:.1f} s "
                  f"({s['records_per_s']:.0f} records/s) -> {s['output']}", highlight=False)
    console.print(f"labels: {s['label_source']}; tasks: {', '.join(s['tasks']) or 'none'}",  # type: ignore[arg-type]
                  highlight=False)
    if not name_errors:
        return
    for line in s["first_errors"]:  # type: ignore[attr-defined]
        err_console.print(f"[red]error:[/] {line}", highlight=False, soft_wrap=True)
    rest = int(s["errors"]) - len(s["first_errors"])  # type: ignore[call-overload, arg-type]
    if rest > 0:
        err_console.print(f"... and {rest} more: the rows with status == 'error' in "
                          f"{s['output']}/index.parquet", highlight=False, soft_wrap=True)

