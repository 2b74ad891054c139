"""A backbone's BatchNorm running statistics re-estimated from whole training signals.

Run: .venv/bin/python benchmarks/bn_statistics.py WEIGHTS DATASET -o OUT [--windows 6400]
     [--lead-dropout 0.3]
Weights trained before the masked-beat pass stopped updating the running statistics have
statistics partly measured on beat-blanked signals; this measures what clean ones change.
It averages the statistics over --windows training windows (folds 1-8, lead dropout as in
training), prints each norm's new/old running-variance ratio and writes OUT/backbone.* (no
adapters: fit them with `ecgmoe finetune --backbone OUT`, then `ecgmoe evaluate`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ecgmoe_cli.io.dataset import open_dataset
from ecgmoe_cli.training.folds import TRAIN_FOLDS
from ecgmoe_cli.training.loop import iterate_batches
from ecgmoe_cli.training.losses import lead_dropout
from ecgmoe_cli.weights.store import load_model, save_backbone


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", type=Path)
    ap.add_argument("dataset", type=Path)
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--windows", type=int, default=6400)
    ap.add_argument("--lead-dropout", type=float, default=0.3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    model, spec, meta = load_model(a.weights, tasks=[])
    ds = open_dataset(a.dataset)
    rows = np.random.default_rng(a.seed).permutation(ds.rows(fold=TRAIN_FOLDS))[:a.windows]
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    before = [(m.running_var.clone(), m.momentum) for m in norms]
    for m in norms:  # a plain average over every batch, normalising with batch statistics
        m.reset_running_stats()
        m.momentum = None
        m.train()
    gen = torch.Generator().manual_seed(a.seed)
    with torch.no_grad():
        for batch, _ in iterate_batches(ds, rows, [], a.batch_size, "cpu"):
            model.encode(lead_dropout(batch, a.lead_dropout, gen) if a.lead_dropout else batch)
    for i, (m, (old, momentum)) in enumerate(zip(norms, before)):
        m.momentum = momentum
        print(f"norm {i}: running variance new / old, mean over channels "
              f"{(m.running_var / old).mean().item():.3f}")
    model.eval()
    a.output.mkdir(parents=True, exist_ok=True)
    print("backbone hash", save_backbone(model, spec, a.output, metrics=meta.get("metrics")))


if __name__ == "__main__":
    main()
