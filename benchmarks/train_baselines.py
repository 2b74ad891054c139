"""Trained baselines for `ecgmoe bench --baselines DIR`, so its accuracy table compares trained
models: `dense_multitask` (MoEs replaced by dense FFNs of the same width, one head per task) and
`per_task` (one full ECG-MoE per task, no adapters).

Run: .venv/bin/python benchmarks/train_baselines.py DATASET -o DIR [--config base]
     [--dense-epochs 6] [--per-task-epochs 1] [--models dense_multitask,per_task]
     [--lead-dropout P] [--recipe ablation|train]
Writes DIR/dense_multitask/ and DIR/per_task/<task>/ (weights folders like weights/:
safetensors + JSON) and DIR/baselines.json (epochs, windows, training seconds, FLOPs per
record). Training: folds 1-8, the multi-task loss of `benchmarks/ablation.py` (AdamW + cosine,
no SSL, no lead dropout unless --lead-dropout). The defaults give each baseline at least the
training compute of the shipped ECG-MoE: dense the same 6 epochs (2.8x its FLOPs per window),
per_task one epoch (10x its FLOPs per window, about its training wall-clock).
`--recipe train` trains dense_multitask by `ecgmoe train`'s own recipe instead (masked-beat
loss 0.5, lead dropout 0.3 unless --lead-dropout, best epoch by validation loss, calibrated
heads): the shipped weights' recipe, so only the architecture differs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch
from ablation import fit

from ecgmoe_cli.io.dataset import open_dataset
from ecgmoe_cli.model.baselines import PerTaskModels, dense_multitask
from ecgmoe_cli.model.batch import example_batch
from ecgmoe_cli.model.config import EcgMoeConfig
from ecgmoe_cli.model.summary import flops_per_record
from ecgmoe_cli.training.loop import FitConfig
from ecgmoe_cli.training.train import train_backbone
from ecgmoe_cli.weights.store import save_model

BUILD = {"dense_multitask": dense_multitask, "per_task": PerTaskModels.fresh}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--config", default="base")
    ap.add_argument("--dense-epochs", type=int, default=6)
    ap.add_argument("--per-task-epochs", type=int, default=1)
    ap.add_argument("--models", default="dense_multitask,per_task")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lead-dropout", type=float, default=None,
                    help="as `ecgmoe train --lead-dropout` (default 0, or 0.3 with --recipe "
                         "train, as the shipped weights)")
    ap.add_argument("--recipe", choices=("ablation", "train"), default="ablation")
    a = ap.parse_args()
    if a.lead_dropout is None:
        a.lead_dropout = 0.3 if a.recipe == "train" else 0.0
    if a.recipe == "train" and a.models != "dense_multitask":
        raise SystemExit("--recipe train trains dense_multitask only: "
                         "pass --models dense_multitask")
    ds = open_dataset(a.dataset)
    tasks = [t for t in ds.tasks if ds.has_columns(t)]
    train = ds.rows(fold=tuple(range(1, 9)))
    config = EcgMoeConfig.from_spec(a.config, ds.spec)
    epochs = {"dense_multitask": a.dense_epochs, "per_task": a.per_task_epochs}
    log_path = a.output / "baselines.json"
    log = json.loads(log_path.read_text()) if log_path.exists() else {}
    for name in a.models.split(","):
        if name not in BUILD:
            raise SystemExit(f"unknown baseline {name!r}; known: {', '.join(BUILD)}")
        torch.manual_seed(a.seed)
        model = BUILD[name](config, tasks)
        t0 = time.strftime("%Y-%m-%d %H:%M:%S")
        if a.recipe == "train":
            train_s = _train_recipe(a)
        else:
            train_s = fit(model, ds, tasks, train, epochs[name], a.batch_size, a.lr, a.seed,
                          a.lead_dropout)
            model.eval()
            parts = model.models.items() if name == "per_task" else [("", model)]
            for task, m in parts:
                save_model(m, ds.spec, a.output / name / task)
        log[name] = {"recipe": a.recipe, "dataset": str(a.dataset), "epochs": epochs[name],
                     "windows": len(train), "batch_size": a.batch_size, "lr": a.lr, "seed": a.seed,
                     "lead_dropout": a.lead_dropout, "started": t0,
                     "train_s": round(train_s, 1),
                     "flops_per_record": flops_per_record(model, example_batch(config, 8))}
        log_path.write_text(json.dumps(log, indent=1) + "\n")
        print(json.dumps({name: log[name]}), flush=True)


def _train_recipe(a: argparse.Namespace) -> float:
    """dense_multitask through `train_backbone` (a run folder beside it); training seconds."""
    run = a.output / "dense_multitask-run"
    shutil.rmtree(run, ignore_errors=True)  # a fresh run each time, as `make weights` does
    cfg = FitConfig(epochs=a.dense_epochs, batch_size=a.batch_size, lr=a.lr, seed=a.seed,
                    lead_dropout=a.lead_dropout)
    t = time.perf_counter()
    train_backbone(a.dataset, run, a.config, cfg, progress=False, dense=True)
    seconds = time.perf_counter() - t
    shutil.rmtree(a.output / "dense_multitask", ignore_errors=True)
    (run / "weights").rename(a.output / "dense_multitask")
    return seconds


if __name__ == "__main__":
    main()
