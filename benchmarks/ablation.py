"""Ablation table: full ECG-MoE vs no morphology path vs no rhythm path vs dense (no MoE) vs
a plain 1-D ResNet vs one full model per task (`ecgmoe bench`'s per_task), each trained the
same way on the same dataset and scored on fold 10.

Run: .venv/bin/python benchmarks/ablation.py DATASET [--config base] [--epochs 3]
     [--train-limit N] [--variants ecgmoe,no_morphology,...] [--json out.json]
Prints a markdown table: per task the headline metric (macro AUROC, accuracy or MAE), and
parameters and forward FLOPs per record of each variant. Every variant sees the same rows in
the same order (seeded), with the multi-task loss only (no SSL, no lead dropout).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from ecgmoe_cli.io.dataset import open_dataset
from ecgmoe_cli.model.baselines import PerTaskModels, ResNet1d, ablation, dense_multitask
from ecgmoe_cli.model.batch import example_batch, to_torch
from ecgmoe_cli.model.config import EcgMoeConfig
from ecgmoe_cli.model.ecgmoe import EcgMoe
from ecgmoe_cli.model.summary import flops_per_record
from ecgmoe_cli.training.loop import lr_factor
from ecgmoe_cli.training.losses import lead_dropout as drop_leads
from ecgmoe_cli.training.losses import set_regression_scaling
from ecgmoe_cli.training.scoring import score_task

VARIANTS = ("ecgmoe", "no_morphology", "no_rhythm", "dense", "resnet1d", "per_task")


def build(name: str, config: EcgMoeConfig, tasks: list) -> torch.nn.Module:
    if name == "ecgmoe":
        return EcgMoe(config, tasks)
    if name in ("no_morphology", "no_rhythm"):
        return EcgMoe(ablation(config, name), tasks)
    if name == "dense":
        return dense_multitask(config, tasks)
    if name == "resnet1d":
        return ResNet1d(tasks)
    if name == "per_task":  # one full model per task, trained together on the mean task loss
        return PerTaskModels.fresh(config, tasks)
    raise SystemExit(f"unknown variant {name}")


def headline(s: dict) -> float | None:
    return s.get("macro_auroc", s.get("accuracy", s.get("mae")))


def fit(model: torch.nn.Module, ds, tasks, train: np.ndarray, epochs: int, batch_size: int,
        lr: float, seed: int, lead_dropout: float = 0.0) -> float:
    """AdamW + cosine on the multi-task loss, rows shuffled per epoch (seeded); seconds taken.
    lead_dropout as `ecgmoe train --lead-dropout` (a baseline trained like the shipped weights)."""
    set_regression_scaling(model, ds, train, tasks)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    steps = epochs * math.ceil(len(train) / batch_size)
    step, t0 = 0, time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = train[np.random.default_rng([seed, epoch]).permutation(len(train))]
        for i in range(0, len(order), batch_size):
            r = order[i:i + batch_size]
            tg = {k: torch.from_numpy(v) for k, v in ds.targets(r, tasks).items()}
            for g in opt.param_groups:
                g["lr"] = lr * lr_factor(step, steps, 0.05, 0.05)
            batch = to_torch(ds.batch(r))
            if lead_dropout > 0:
                batch = drop_leads(batch, lead_dropout, gen)
            _, loss = model(batch, tg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
    return time.perf_counter() - t0


def run_variant(name: str, config: EcgMoeConfig, ds, tasks, train, test, epochs: int,
                batch_size: int, lr: float, seed: int) -> dict:
    torch.manual_seed(seed)
    model = build(name, config, tasks)
    train_s = fit(model, ds, tasks, train, epochs, batch_size, lr, seed)
    model.eval()
    preds: dict[str, list[np.ndarray]] = {t.name: [] for t in tasks}
    with torch.no_grad():
        for i in range(0, len(test), 256):
            outs, _ = model(to_torch(ds.batch(test[i:i + 256])))
            for t in tasks:
                preds[t.name].append(model.heads[t.name].predict(outs[t.name]).numpy())
    target = ds.targets(test, tasks)
    scores = {t.name: headline(score_task(t, np.concatenate(preds[t.name]), target[t.name],
                                          n_boot=0)) for t in tasks}
    probe = example_batch(config, 8)
    return {"variant": name, "parameters": sum(p.numel() for p in model.parameters()),
            "flops_per_record": flops_per_record(model, probe), "train_s": round(train_s, 1),
            "scores": scores}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--config", default="base")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--train-limit", type=int, default=0, help="use the first N training rows")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    ds = open_dataset(a.dataset)
    tasks = [t for t in ds.tasks if ds.has_columns(t)]
    train, test = ds.rows(fold=tuple(range(1, 9))), ds.rows(fold=10)
    if a.train_limit:
        train = train[:a.train_limit]
    config = EcgMoeConfig.from_spec(a.config, ds.spec)
    results = []
    for name in a.variants.split(","):
        results.append(run_variant(name, config, ds, tasks, train, test, a.epochs,
                                   a.batch_size, a.lr, a.seed))
        print(json.dumps(results[-1]), flush=True)
    print(f"\n{len(train)} training windows, {len(test)} test windows (fold 10), "
          f"{a.epochs} epochs, config {a.config}\n")
    names = [t.name for t in tasks]
    print("| variant | " + " | ".join(names) + " | parameters | MFLOPs/record | train s |")
    print("|---" * (len(names) + 4) + "|")
    for r in results:
        cells = [("-" if r["scores"][n] is None else f"{r['scores'][n]:.3f}") for n in names]
        print(f"| {r['variant']} | " + " | ".join(cells) +
              f" | {r['parameters']:,} | {r['flops_per_record'] / 1e6:.1f} | {r['train_s']} |")
    print("\nmetric: macro AUROC (binary/multilabel), accuracy (multiclass), MAE (regression)")
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
