"""The Typer app: registers the commands, nothing else."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from ecgmoe_cli.commands import (
    bench,
    evaluate,
    finetune,
    info,
    plot,
    predict,
    preprocess,
    simulate,
    train,
)
from ecgmoe_cli.commands.common import cli_errors

app = typer.Typer(
    name="ecgmoe",
    help="ECG-MoE: preprocess ECG folders, train and fine-tune, predict to Parquet, benchmark.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

_COMMANDS = {
    "preprocess": (preprocess.run, "Read a folder of records into a model-ready dataset."),
    "simulate": (simulate.run, "Write a synthetic PTB-XL-shaped corpus of labelled 12-lead ECGs."),
    "train": (train.run, "Train the ECG-MoE backbone, multi-task, on a preprocessed dataset."),
    "finetune": (finetune.run, "Train one task's LoRA adapter and head on a frozen backbone."),
    "evaluate": (evaluate.run, "Score weights on a dataset's test fold, per task."),
    "predict": (predict.run, "Predict every task for a folder of records into a Parquet report."),
    "bench": (bench.run, "Time ECG-MoE against per-task and dense multi-task baselines."),
    "plot": (plot.run, "Draw a record as a standard 12-lead ECG on grid paper."),
    "info": (info.run, "Print a model config's parameters, FLOPs and active experts."),
}
for _name, (_fn, _help) in _COMMANDS.items():
    app.command(_name, help=_help)(cli_errors(_fn))


def _print_version(value: bool) -> None:
    if value:
        from ecgmoe_cli import __version__

        print(f"ecgmoe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print the version and exit.")] = False) -> None:
    """ECG-MoE: preprocess ECG folders, train and fine-tune, predict to Parquet, benchmark."""


def main() -> None:
    """Run the command, then leave without the interpreter's teardown: once torch is loaded
    that takes ~0.9 s (longer than a small `predict`), and every output is already written,
    renamed into place and flushed by then."""
    try:
        app()
    except SystemExit as e:
        code = e.code
    else:
        code = 0
    if isinstance(code, str):
        print(code, file=sys.stderr)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said
            pass
    os._exit(code if isinstance(code, int) else (0 if code is None else 1))
