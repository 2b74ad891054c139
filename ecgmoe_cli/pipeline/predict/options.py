"""What `ecgmoe predict` accepts besides INPUT and -o, its checks, and the batch size each
device gets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.records.record import check_fs_option
from ecgmoe_cli.io.report import is_single_file

CPU_BATCH = 64  # a worker's chunk is one batch: larger ones leave a core idle at the end
GPU_BATCH = 256  # a GPU is bound by kernel launches: fewer, larger batches (BENCHMARKS.md)


@dataclass
class PredictOptions:
    """Everything `ecgmoe predict` accepts besides INPUT and -o."""

    weights: Path | None = None  # None: the shipped weights (weights.default_weights_dir)
    tasks: Sequence[str] | None = None  # None: every adapter the weights have
    device: str = "cpu"
    workers: int = 0  # worker processes; 0: one per core (CPU: each with a model); 1: none
    batch_size: int = 0  # windows per forward pass; 0: GPU_BATCH on a GPU, CPU_BATCH on CPU
    windows: bool = False  # also write per-window rows (sink.windows_path)
    beats: bool = False  # also write per-beat rows (sink.beats_path); needs the beat head
    explain: bool = False  # add the `explain` column
    shard: tuple[int, int] = (0, 1)
    resume: bool = False
    checkpoint_every: int = 2048  # records per sealed part file: the most a kill can lose
    lead_map: dict[str, str] | None = None
    fs: float | None = None  # for headerless CSV/NPY
    lead_names: list[str] | None = None  # for headerless CSV/NPY
    overwrite: bool = False  # replace an existing report (never anything else)


def check_options(opts: PredictOptions, out: Path) -> None:
    """Every problem with the options at once, before the model loads."""
    i, n = opts.shard
    problems = []
    if n > 1 and is_single_file(out):
        problems.append(f"--shard {i}/{n} needs a directory output (e.g. -o results/) where "
                        "each shard writes its own part files; got a single file")
    if opts.batch_size < 0:
        problems.append(f"--batch-size must be >= 1 (or 0: the device's default), got "
                        f"{opts.batch_size}")
    if opts.checkpoint_every < 1:
        problems.append(f"--checkpoint-every must be >= 1, got {opts.checkpoint_every}")
    if opts.workers < 0:
        problems.append(f"--workers must be >= 0, got {opts.workers}")
    if problems:
        raise EcgMoeError("; ".join(problems), out)
    check_fs_option(opts.fs)
    if not on_cpu(opts):  # before any file is made (torch is imported for it, early)
        from ecgmoe_cli.model.device import resolve_device

        resolve_device(opts.device)


def batch_size_for(opts: PredictOptions) -> int:
    """--batch-size, or the device's default (0): a GPU wants bigger batches than the CPU
    workers, whose chunk is one batch."""
    return opts.batch_size or (CPU_BATCH if on_cpu(opts) else GPU_BATCH)


def on_cpu(opts: PredictOptions) -> bool:
    return not str(opts.device).startswith("cuda")
