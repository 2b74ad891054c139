"""`ecgmoe train`: the backbone, multi-task on every label present (folds 1-8 train, 9 validate).

Multi-GPU / multi-node: `torchrun --nproc_per_node N -m ecgmoe_cli train ...` (DDP).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def run(
    dataset: Annotated[list[Path], typer.Argument(
        help="Dataset folder(s) made by `ecgmoe preprocess` with one spec; several train as "
             "one (a target a dataset lacks is unknown for its windows).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Run folder: weights/, "
                                         "metrics.jsonl and checkpoints/ go here.")],
    config: Annotated[str, typer.Option(help="Model config preset: base or tiny.")] = "base",
    epochs: Annotated[int, typer.Option(help="Passes over the training folds.")] = 20,
    batch_size: Annotated[int, typer.Option(help="Windows per step (per process under DDP).")] = 64,
    lr: Annotated[float, typer.Option(help="Peak AdamW learning rate (cosine schedule).")] = 1e-3,
    device: Annotated[str, typer.Option(help="cpu or cuda (cuda:N under torchrun is set "
                                        "per process).")] = "cpu",
    resume: Annotated[bool, typer.Option(help="Continue from the run folder's last "
                                         "checkpoint.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of initialisation and shuffling.")] = 0,
    ssl_weight: Annotated[float, typer.Option(help="Weight of the masked-beat reconstruction "
                                              "loss (lets unlabelled windows train).")] = 0.5,
    lead_dropout: Annotated[float, typer.Option(help="Probability a training window keeps only "
                                                "lead I, I+II or a random subset.")] = 0.3,
    task_weight: Annotated[list[str] | None, typer.Option(
        help="TASK=W: weight of a task's loss in the multi-task mean (default 1 each); "
             "repeat for several tasks.")] = None,
    init: Annotated[Path | None, typer.Option(
        help="Start from this weights folder's backbone (same config; heads start "
             "fresh), e.g. a synthetic pre-training run.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run summary as JSON.")] = False,
) -> None:
    """Train the ECG-MoE backbone on a preprocessed dataset."""
    from ecgmoe_cli.commands.common import console
    from ecgmoe_cli.io.outputs import check_run_folder
    from ecgmoe_cli.training.loop import FitConfig
    from ecgmoe_cli.training.train import parse_task_weights, train_backbone

    check_run_folder(output)
    fit_cfg = FitConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                        lead_dropout=lead_dropout)
    summary = train_backbone(dataset, output, config, fit_cfg, device=device, resume=resume,
                             ssl_weight=ssl_weight, task_weights=parse_task_weights(task_weight),
                             progress=not (quiet or as_json), init=init)
    if summary is None:  # a non-zero DDP rank: rank 0 reports
        return
    if as_json:
        console.print_json(json.dumps(summary))
    elif not quiet:
        console.print(f"trained {summary['epochs_run']} epochs; best validation loss "
                      f"{summary['best_val_loss']:.4f} at epoch {summary['best_epoch']}; "
                      f"weights in [bold]{summary['weights']}[/]")
