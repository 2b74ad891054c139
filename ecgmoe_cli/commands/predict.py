"""`ecgmoe predict`: a folder of ECG records into a Parquet report, one row per record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from ecgmoe_cli.pipeline.predict.run import PredictResult


SHOW_ERRORS = 5  # failed records named in the summary


def run(
    input: Annotated[Path, typer.Argument(
        metavar="INPUT", help="A folder of records (searched recursively: WFDB .hea, .edf, "
                              ".bdf, .csv, .npy, DICOM ECG, HL7 aECG / GE MUSE / Philips .xml) "
                              "or one record file (a WFDB record with or without .hea).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="out.parquet (one file, written "
                                         "atomically) or a directory (a Parquet dataset of part "
                                         "files; needed with --shard i/n, n > 1).")],
    weights: Annotated[Path | None, typer.Option(help="Weights folder (default: the shipped "
                                                 "weights).")] = None,
    tasks: Annotated[list[str] | None, typer.Option("--tasks", help="Tasks to predict (repeat or "
                                                    "comma-separate; default: every adapter "
                                                    "the weights have).")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    workers: Annotated[int, typer.Option(min=0, help="Worker processes (0 = one per core; on "
                                         "CPU each runs its own copy of the model; 1 = all in "
                                         "the main process).")] = 0,
    batch_size: Annotated[int, typer.Option(min=0, help="Windows per forward pass (0 = 64 on "
                                            "CPU, 256 on a GPU).")] = 0,
    windows: Annotated[bool, typer.Option("--windows", help="Also write one row per 10 s "
                                          "window to OUT.windows.parquet (or OUT.windows/).")
                       ] = False,
    beats: Annotated[bool, typer.Option("--beats", help="Also write one row per detected beat "
                                        "(time, sample, RR, AAMI class N/S/V/F/Q and its "
                                        "probability) to OUT.beats.parquet (or OUT.beats/).")
                     ] = False,
    explain: Annotated[bool, typer.Option("--explain", help="Add an `explain` column: expert "
                                          "routing and the beats behind each positive call.")
                       ] = False,
    shard: Annotated[str, typer.Option(help="i/n: process a deterministic 1/n of the records "
                                       "(Slurm arrays); write to a directory.")] = "0/1",
    resume: Annotated[bool, typer.Option("--resume", help="Skip records already in OUT (after "
                                         "an interrupted run).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing report "
                                            "(never a file or folder that is not one).")
                         ] = False,
    checkpoint_every: Annotated[int, typer.Option(help="Records per sealed part file: the most "
                                                  "a killed run loses before --resume.")
                                ] = 2048,
    strict: Annotated[bool, typer.Option("--strict/--no-strict", help="Exit 1 if any record "
                                         "failed (the report is still written).")
                      ] = False,
    lead_map: Annotated[list[str] | None, typer.Option(
        "--lead-map", help="NAME=LEAD: read the file's channel NAME as lead LEAD, or NAME=none "
                           "to ignore it (repeatable).")] = None,
    fs: Annotated[float | None, typer.Option(
        help="Sampling rate in Hz, for files that do not store one (CSV, NPY).")] = None,
    leads: Annotated[str | None, typer.Option(
        help="Leads to use, e.g. I,II,V1 (the rest masked, as evaluate --leads); they "
             "also name the columns of CSV/NPY files without a header row.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or table.")
                     ] = False,
) -> None:
    """Predict every task for each record into a Parquet report (schema: README)."""
    from ecgmoe_cli.commands.common import console, err_console, split_list
    from ecgmoe_cli.errors import EcgMoeError
    from ecgmoe_cli.io.report import parse_shard
    from ecgmoe_cli.pipeline.predict.options import PredictOptions
    from ecgmoe_cli.pipeline.predict.run import predict_folder
    from ecgmoe_cli.progress import Progress
    from ecgmoe_cli.signal.leads import parse_lead_map

    opts = PredictOptions(
        weights=weights, tasks=split_list(*(tasks or [])) or None, device=device,
        workers=workers,
        batch_size=batch_size, windows=windows, beats=beats, explain=explain,
        shard=parse_shard(shard),
        resume=resume, checkpoint_every=checkpoint_every,
        lead_map=parse_lead_map(lead_map) or None, fs=fs,
        lead_names=split_list(leads) or None,
        overwrite=overwrite)
    with Progress("predict", show=not (quiet or as_json), unit="records") as bar:
        result = predict_folder(input, output, opts,
                                progress=lambda done, total: bar.update(done, total))
    _warn_stale(result)
    for line in result.warnings:
        err_console.print(f"[yellow]warning:[/] {line}", highlight=False, soft_wrap=True)
    if as_json:
        console.print_json(json.dumps(_summary_dict(result)))
    elif not quiet:
        _print_summary(result, name_errors=input.is_dir())  # else the error line below
    n_errors = result.tally.status.get("error", 0)
    if n_errors and (strict or not input.is_dir()):  # one file that failed: the run failed
        first = result.tally.errors[0]["error"]
        raise EcgMoeError(first if not input.is_dir() else
                          f"{n_errors} record(s) failed (--strict); first: {first}")


def _summary_dict(r: PredictResult) -> dict[str, Any]:
    n = r.n_processed
    return {"output": str(r.output), "windows_output": r.windows_output and str(r.windows_output),
            "beats_output": r.beats_output and str(r.beats_output), "warnings": r.warnings,
            "weights": str(r.weights_dir), "weights_id": r.weights_id, "tasks": r.tasks,
            "records_found": r.n_found, "records_in_shard": r.n_shard,
            "records_resumed": r.n_resumed, "records_processed": n,
            "status": dict(r.tally.status), "errors": r.tally.errors,
            "resume_changed": r.changed, "resume_vanished": r.vanished,
            "report_status": r.report_status or dict(r.tally.status),
            "positives": {t: dict(c) for t, c in r.tally.positives.items()},
            "seconds": round(r.seconds, 3),
            "records_per_s": round(n / r.seconds, 2) if r.seconds > 0 else None}


def _warn_stale(r: PredictResult) -> None:
    """--resume: say which earlier rows were not kept, and why."""
    from ecgmoe_cli.commands.common import err_console

    for keys, what in ((r.changed, "changed since the first run (size or time): predicted "
                        "again"), (r.vanished, "no longer under INPUT: their rows dropped")):
        if keys:
            first = ", ".join(keys[:SHOW_ERRORS]) + (" ..." if len(keys) > SHOW_ERRORS else "")
            err_console.print(f"[yellow]warning:[/] --resume: {len(keys)} record(s) {what} "
                              f"({first})", highlight=False, soft_wrap=True)


def _print_summary(r: PredictResult, name_errors: bool = True) -> None:
    from rich.table import Table

    from ecgmoe_cli.commands.common import console

    n = r.n_processed
    rate = n / r.seconds if r.seconds > 0 else float("nan")
    console.print(f"[bold]predict[/]: {n} records in {r.seconds:.1f} s ({rate:.1f} records/s)")
    head = Table(show_header=False)
    head.add_column(no_wrap=True)
    head.add_column(justify="right")
    for status, count in sorted(r.tally.status.items()):
        head.add_row(f"status {status}", f"[{'green' if status == 'ok' else 'red'}]{count}[/]")
    if r.n_resumed:
        head.add_row("already in the report (--resume)", str(r.n_resumed))
    if r.report_status:
        head.add_row("the report now holds", ", ".join(
            f"{k} {v}" for k, v in sorted(r.report_status.items())))
    if r.n_shard != r.n_found:
        head.add_row("in other shards", str(r.n_found - r.n_shard))
    console.print(head)
    if r.tally.positives:
        table = Table(title="records per predicted label")
        table.add_column("task", no_wrap=True)
        table.add_column("positive / class counts")
        for task, counts in r.tally.positives.items():
            if counts:
                table.add_row(task, ", ".join(f"{k} {v}" for k, v in counts.most_common()))
        console.print(table)
    console.print(f"report: [bold]{r.output}[/]" + (f"; windows: [bold]{r.windows_output}[/]"
                                                      if r.windows_output else "")
                  + (f"; beats: [bold]{r.beats_output}[/]" if r.beats_output else "")
                  + f"; weights {r.weights_id}")
    if name_errors:
        _print_errors(r)


def _print_errors(r: PredictResult) -> None:
    """The first failed records and their cause on stderr, and where the rest are."""
    from ecgmoe_cli.commands.common import err_console

    n_errors = r.tally.status.get("error", 0)
    for e in r.tally.errors[:SHOW_ERRORS]:
        err_console.print(f"[red]failed:[/] {e['error']}", highlight=False, soft_wrap=True)
    if n_errors > SHOW_ERRORS:
        err_console.print(f"... and {n_errors - SHOW_ERRORS} more: the rows with status == "
                          f"'error' in {r.output}", highlight=False, soft_wrap=True)
