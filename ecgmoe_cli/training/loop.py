"""The epoch loop shared by `train` and `finetune`: batches from memmaps, AdamW + cosine,
metrics.jsonl per epoch, an atomic checkpoint per epoch, resume, early stopping, DDP.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.model.batch import to_torch
from ecgmoe_cli.progress import Progress
from ecgmoe_cli.training.checkpoints import (
    latest_checkpoint,
    optimizer_from_flat,
    restore_rng,
    save_checkpoint,
    truncate_metrics,
)
from ecgmoe_cli.training.ddp import DistInfo, all_mean
from ecgmoe_cli.training.losses import lead_dropout


@dataclass
class FitConfig:
    """Optimisation settings of one run (saved in its metrics and checkpoint)."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_frac: float = 0.05  # fraction of all steps with a linear LR warm-up
    min_lr_frac: float = 0.05  # the cosine decays to this fraction of lr
    seed: int = 0
    lead_dropout: float = 0.3  # probability a training sample keeps only {I}, {I, II} or a subset
    grad_clip: float = 1.0
    patience: int | None = None  # early stopping on validation loss; None = run every epoch

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            problems.append(f"batch size must be >= 1, got {self.batch_size}")
        if not 0 < self.lr < math.inf:
            problems.append(f"learning rate must be a finite number > 0, got {self.lr}")
        if not 0 <= self.lead_dropout <= 1:
            problems.append(f"lead dropout must be in [0, 1], got {self.lead_dropout}")
        if problems:
            raise EcgMoeError("; ".join(problems))


@dataclass
class FitResult:
    epochs_run: int
    best_epoch: int
    best_val_loss: float
    history: list[dict[str, Any]] = field(default_factory=list)


def epoch_rows(rows: np.ndarray, seed: int, epoch: int, info: DistInfo, shuffle: bool = True
               ) -> np.ndarray:
    """This rank's rows for one epoch: the same shuffle on every rank, padded, then strided."""
    rows = np.asarray(rows, np.int64)
    if shuffle:
        rows = rows[np.random.default_rng([seed, epoch]).permutation(len(rows))]
    if info.world > 1 and len(rows):
        pad = (-len(rows)) % info.world  # every rank takes the same number of steps
        rows = np.concatenate([rows, rows[:pad]])
        rows = rows[info.rank::info.world]
    return rows


ToBatch = Callable[[dict[str, np.ndarray], str], dict[str, torch.Tensor]]


def iterate_batches(dataset: Any, rows: np.ndarray, tasks: Sequence[Any], batch_size: int,
                    device: str, to_batch: ToBatch = to_torch
                    ) -> Iterator[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]]:
    """(model batch, targets) tensors on `device`, read straight from the memmaps."""
    for i in range(0, len(rows), batch_size):
        r = rows[i:i + batch_size]
        batch = to_batch(dataset.batch(r), device)
        tg = {k: torch.from_numpy(v).to(device) for k, v in dataset.targets(r, tasks).items()}
        yield batch, tg


def _snapshot(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {n: t.detach().clone() for n, t in tensors.items()}


def lr_factor(step: int, total: int, warmup_frac: float, min_frac: float) -> float:
    """Linear warm-up then cosine decay to min_frac."""
    warm = max(1, int(total * warmup_frac))
    if step < warm:
        return (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return min_frac + (1 - min_frac) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


@dataclass
class _Progress:
    """Where a run stands between epochs: what a checkpoint saves and a resume restores."""

    start: int  # the next epoch to run
    best_epoch: int
    best_val: float
    bad: int  # epochs since the validation loss last improved
    history: list[dict[str, Any]]
    best_state: dict[str, torch.Tensor]  # the best epoch's trained tensors and buffers


def fit(model: nn.Module, objective: nn.Module, params: list[nn.Parameter], dataset: Any,
        train_rows: np.ndarray, val_rows: np.ndarray, tasks: Sequence[Any], cfg: FitConfig,
        run_dir: Path, info: DistInfo, resume: bool = False, show_progress: bool = True,
        step_module: nn.Module | None = None, to_batch: ToBatch = to_torch) -> FitResult:
    """Train `params` by minimising `objective(batch, targets)[0]` over `train_rows`.

    `model` is the plain module whose state is checkpointed; `step_module` runs the training
    loss (the DDP wrapper of `objective` when distributed); `objective` in eval mode gives the
    validation loss. The best epoch's `params` (by validation loss) are loaded back at the end.
    `to_batch` turns `dataset.batch(rows)` into tensors (finetune passes cached features).
    """
    step_module = objective if step_module is None else step_module
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir, metrics_path = run_dir / "checkpoints", run_dir / "metrics.jsonl"
    found = _checkpoint_to_resume(ckpt_dir, run_dir, resume)
    if found is not None:  # the shuffle order must stay that of the interrupted run
        cfg = replace(cfg, seed=found[2]["state"]["config"]["seed"])
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    names = {id(p): n for n, p in model.named_parameters()}
    # BatchNorm statistics belong with the weights they were measured under
    tracked = {**{names[id(p)]: p for p in params}, **dict(model.named_buffers())}
    state = _Progress(1, 0, math.inf, 0, [], _snapshot(tracked))
    if found is not None:
        state = _restore(model, opt, tracked, found)
        if info.is_main:
            truncate_metrics(metrics_path, state.start - 1)
    elif info.is_main and metrics_path.exists():
        metrics_path.unlink()

    steps_per_epoch = math.ceil(len(epoch_rows(train_rows, cfg.seed, 0, info)) / cfg.batch_size)
    stopped = cfg.patience is not None and state.bad >= cfg.patience  # a resumed, finished run
    epochs_run = state.start - 1
    for epoch in range(state.start, 1 if stopped else cfg.epochs + 1):
        t0 = time.perf_counter()
        rows = epoch_rows(train_rows, cfg.seed, epoch, info)
        with progress_bar(show_progress and info.is_main, f"epoch {epoch}/{cfg.epochs}",
                          math.ceil(len(rows) / cfg.batch_size)) as advance:
            tot, n_batches, n_samples, parts_sum = _train_epoch(
                step_module, opt, params, dataset, rows, tasks, cfg, info, epoch,
                steps_per_epoch, to_batch, advance)
        train_s = time.perf_counter() - t0
        val_loss, val_parts = _validate(objective, dataset, val_rows, tasks, cfg.batch_size,
                                        info.device, to_batch)
        if val_loss < state.best_val or not math.isfinite(state.best_val):
            state.best_epoch, state.best_val, state.bad = epoch, val_loss, 0
            state.best_state = _snapshot(tracked)
        else:
            state.bad += 1
        line = {
            "epoch": epoch,
            "train_loss": all_mean(info, tot / max(1, n_batches)),
            "train_parts": {k: v / max(1, n_batches) for k, v in parts_sum.items()},
            "val_loss": val_loss, "val_parts": val_parts,
            "lr": opt.param_groups[0]["lr"], "seconds": round(time.perf_counter() - t0, 3),
            "train_samples_per_s": round(n_samples * info.world / max(train_s, 1e-9), 1),
            "train_windows": len(train_rows),
            "world_size": info.world,
        }
        state.history.append(line)
        stopped = cfg.patience is not None and state.bad >= cfg.patience
        if info.is_main:
            _save_epoch(model, opt, state, cfg, epoch, line, ckpt_dir, metrics_path)
        epochs_run = epoch
        if stopped:
            break
    with torch.no_grad():
        for n, t in tracked.items():
            t.copy_(state.best_state[n].to(t.device))
    return FitResult(epochs_run=epochs_run, best_epoch=state.best_epoch,
                     best_val_loss=state.best_val, history=state.history)


def _checkpoint_to_resume(ckpt_dir: Path, run_dir: Path, resume: bool
                          ) -> tuple[int, dict[str, torch.Tensor], dict[str, Any]] | None:
    """The checkpoint `--resume` continues from; a run folder with one needs `--resume`."""
    found = latest_checkpoint(ckpt_dir)
    if resume and found is None:
        raise EcgMoeError("nothing to resume: no checkpoint in the run directory", ckpt_dir)
    if not resume and found is not None:
        raise EcgMoeError("run folder already holds checkpoints: pass --resume to continue "
                          "that run, or choose another output folder", run_dir)
    return found


def _restore(model: nn.Module, opt: torch.optim.Optimizer, tracked: dict[str, torch.Tensor],
             found: tuple[int, dict[str, torch.Tensor], dict[str, Any]]) -> _Progress:
    """Model, optimizer, RNG and progress as the checkpoint left them."""
    epoch, tensors, meta = found
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    optimizer_from_flat(opt, tensors, meta["optimizer"])
    restore_rng(tensors)
    st = meta["state"]
    best_state = {n: tensors.get(f"best.{n}", t.detach().clone()) for n, t in tracked.items()}
    return _Progress(epoch + 1, st["best_epoch"], st["best_val"], st["bad"], st["history"],
                     best_state)


def _train_epoch(step_module: nn.Module, opt: torch.optim.Optimizer, params: list[nn.Parameter],
                 dataset: Any, rows: np.ndarray, tasks: Sequence[Any], cfg: FitConfig,
                 info: DistInfo, epoch: int, steps_per_epoch: int, to_batch: ToBatch,
                 advance: Callable[..., None]) -> tuple[float, int, int, dict[str, float]]:
    """One pass over this rank's `rows`: (loss sum, batches, samples, loss parts summed)."""
    total_steps = steps_per_epoch * cfg.epochs
    gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch * 1009 + info.rank)
    step_module.train()
    tot, n_batches, n_samples = 0.0, 0, 0
    parts_sum: dict[str, float] = {}
    for i, (batch, tg) in enumerate(iterate_batches(dataset, rows, tasks, cfg.batch_size,
                                                    info.device, to_batch)):
        step = (epoch - 1) * steps_per_epoch + i
        for g in opt.param_groups:
            g["lr"] = cfg.lr * lr_factor(step, total_steps, cfg.warmup_frac, cfg.min_lr_frac)
        if cfg.lead_dropout > 0:
            batch = lead_dropout(batch, cfg.lead_dropout, gen)
        loss, parts = step_module(batch, tg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        tot += float(loss.detach())
        n_batches += 1
        n_samples += _batch_len(batch)
        for k, v in parts.items():
            parts_sum[k] = parts_sum.get(k, 0.0) + v
        advance(loss=float(loss.detach()))
    return tot, n_batches, n_samples, parts_sum


def _save_epoch(model: nn.Module, opt: torch.optim.Optimizer, state: _Progress, cfg: FitConfig,
                epoch: int, line: dict[str, Any], ckpt_dir: Path, metrics_path: Path) -> None:
    """The epoch's metrics line, then its checkpoint (resume truncates lines past the last)."""
    with metrics_path.open("a") as f:
        f.write(json.dumps(line) + "\n")
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors |= {f"best.{n}": t for n, t in state.best_state.items()}
    save_checkpoint(ckpt_dir, epoch, tensors, opt,
                    {"best_epoch": state.best_epoch, "best_val": state.best_val, "bad": state.bad,
                     "history": state.history, "config": asdict(cfg)})


def _batch_len(batch: dict[str, torch.Tensor]) -> int:
    return len(next(iter(batch.values())))


def _validate(objective: nn.Module, dataset: Any, rows: np.ndarray, tasks: Sequence[Any],
              batch_size: int, device: str, to_batch: ToBatch = to_torch
              ) -> tuple[float, dict[str, float]]:
    """Mean validation loss over `rows` (every rank computes it: decisions stay in step)."""
    if len(rows) == 0:
        return math.nan, {}
    objective.eval()
    tot, n = 0.0, 0
    parts_sum: dict[str, float] = {}
    with torch.no_grad():
        for batch, tg in iterate_batches(dataset, rows, tasks, batch_size, device, to_batch):
            loss, parts = objective(batch, tg)
            b = _batch_len(batch)
            tot += float(loss) * b
            n += b
            for k, v in parts.items():
                parts_sum[k] = parts_sum.get(k, 0.0) + v * b
    return tot / n, {k: v / n for k, v in parts_sum.items()}


class progress_bar:
    """Progress on stderr (or nothing): `with progress_bar(...) as advance:`; see progress.py."""

    def __init__(self, enabled: bool, title: str, total: int) -> None:
        self.p = Progress(title, total, enabled, unit="steps")

    def __enter__(self) -> Callable[..., None]:
        return lambda **kw: self.p.update(advance=1, **kw)

    def __exit__(self, *exc: object) -> None:
        self.p.__exit__(*exc)
