"""`ecgmoe evaluate`: score weights on a dataset's test fold, per task and by the task's kind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

MAX_BATCH, MAX_BOOTSTRAP = 65536, 100_000  # beyond these a run is a mistake, not a choice


def _fmt(v: Any, ci: list[Any] | None = None, digits: int = 3) -> str:
    """A figure, or n/a when it is undefined (one class only): never shown as 0."""
    if v is None:
        return "n/a"
    s = f"{v:.{digits}f}"
    if ci and None not in ci:
        s += f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
    return s


def run(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder made by `ecgmoe preprocess`.")],
    weights: Annotated[Path | None, typer.Option(help="Weights folder (default: the shipped "
                                                 "weights).")] = None,
    tasks: Annotated[list[str] | None, typer.Option("--tasks", help="Tasks to score (repeat "
                                                    "or comma-separate; default: all the "
                                                    "dataset has targets for).")] = None,
    fold: Annotated[str, typer.Option(help="Fold to score: 1-10 (10 = the test fold), or "
                                      "'all' for every window (e.g. real records).")] = "10",
    leads: Annotated[str | None, typer.Option(help="Keep only these leads, e.g. I or I,II "
                                              "(the rest masked): lead robustness.")] = None,
    batch_size: Annotated[int, typer.Option(help="Windows per forward pass.")] = 64,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the 95 % CIs.")] = 200,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    as_json: Annotated[bool, typer.Option("--json", help="Print the scores as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No table (warnings and --json "
                                        "still print).")] = False,
) -> None:
    """Score weights on a dataset fold: AUROC/F1/ECE, accuracy/macro F1 or MAE per task."""
    from rich.table import Table

    from ecgmoe_cli.commands.common import console, err_console, split_list
    from ecgmoe_cli.errors import EcgMoeError
    from ecgmoe_cli.training.evaluate import evaluate_weights

    names = split_list(*(tasks or []))
    problems = []
    if fold != "all" and not (fold.isdigit() and 1 <= int(fold) <= 10):
        problems.append(f"--fold must be 1-10 or all, got {fold!r}")
    if not 1 <= batch_size <= MAX_BATCH:
        problems.append(f"--batch-size must be in [1, {MAX_BATCH}], got {batch_size}")
    if not 0 <= bootstrap <= MAX_BOOTSTRAP:
        problems.append(f"--bootstrap must be in [0, {MAX_BOOTSTRAP}], got {bootstrap}")
    if problems:
        raise EcgMoeError("; ".join(problems))
    keep = split_list(leads) or None
    result = evaluate_weights(dataset, weights, names or None,
                              None if fold == "all" else int(fold), batch_size=batch_size,
                              device=device, n_boot=bootstrap, leads=keep)
    for scores in result["tasks"].values():
        for line in scores["warnings"]:
            err_console.print(f"[yellow]warning:[/] {line}", highlight=False, soft_wrap=True)
    if as_json:
        console.print_json(json.dumps(result))
        return
    if quiet:
        return
    fold_name = "all folds" if result["fold"] is None else f"fold {result['fold']}"
    table = Table(title=f"{fold_name}, leads {','.join(result['leads']) if keep else 'all'}: "
                        f"{result['n_windows']} windows")
    table.add_column("task", no_wrap=True)
    table.add_column("kind")
    table.add_column("n", justify="right")
    table.add_column("metrics (95 % CI)")
    for name, s in result["tasks"].items():
        table.add_row(name, s["kind"], str(s["n"]), _summary(s))
        for label, ls in s.get("labels", {}).items():
            table.add_row(f"  {label}", "", str(ls["n"]),
                          f"AUROC {_fmt(ls['auroc'], ls['auroc_ci'])}  F1 {_fmt(ls['f1'])}  "
                          f"ECE {_fmt(ls['ece'])}")
    console.print(table)


def _summary(s: dict[str, Any]) -> str:
    """The task's headline metrics on one line, by kind."""
    if s["kind"] in ("binary", "multilabel"):
        return (f"macro AUROC {_fmt(s['macro_auroc'])}  F1 {_fmt(s['f1'])}  "
                f"ECE {_fmt(s['ece'])}")
    if s["kind"] == "multiclass":
        return f"accuracy {_fmt(s['accuracy'])}  macro F1 {_fmt(s['macro_f1'])}"
    return f"MAE {_fmt(s['mae'], s['mae_ci'], 1)} {s.get('unit') or ''}".rstrip()
