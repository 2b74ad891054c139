"""ECG-MoE against the dense multi-task model and a plain 1-D ResNet on real data (issue 22):
each trained from scratch by one recipe on the same real + synthetic windows, calibrated on the
same validation fold, then scored by `real_eval.py`'s own protocol.

Run (datasets made by `make real-data` / `make weights`):
  .venv/bin/python benchmarks/real_ablation.py data/weights-build/sim-mix-ds \
      data/weights-build/ptbxl-ds data/weights-build/cinc2017-ds data/weights-build/mitdb-ds \
      --ptbxl data/weights-build/ptbxl-ds --cinc2017 data/weights-build/cinc2017-ds \
      --mitdb data/weights-build/mitdb-ds [--epochs 3] [--variants ecgmoe,dense,resnet1d] \
      [--json out.json] [--save DIR]

The recipe is `ablation.py`'s (AdamW + cosine on the multi-task loss, rows in one seeded order)
with lead dropout 0.3, as the shipped weights train; no masked-beat loss (the ResNet has no
beats to mask) and no synthetic pre-training, so it compares architectures, not the shipped
weights (their figures are in weights/metrics_real.json). Each model's heads get a temperature
and F1 thresholds on fold 9 (`calibrate_heads`), as `ecgmoe train` gives them, before scoring.
`--save DIR` keeps DIR/ecgmoe and DIR/dense_multitask as weights folders, for
`ecgmoe bench --data DS --weights DIR/ecgmoe --baselines DIR` on a real dataset's fold 10.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import real_eval
import torch
from ablation import build, fit

from ecgmoe_cli.io.dataset import open_datasets
from ecgmoe_cli.model.batch import example_batch
from ecgmoe_cli.model.config import EcgMoeConfig
from ecgmoe_cli.model.summary import flops_per_record
from ecgmoe_cli.training.calibrate import calibrate_heads
from ecgmoe_cli.weights.store import save_model

SAVED_AS = {"ecgmoe": "ecgmoe", "dense": "dense_multitask"}  # bench's names; the ResNet has none


class Scored(torch.nn.Module):
    """Any baseline behind the calls `real_eval` and `calibrate_heads` make of an EcgMoe."""

    def __init__(self, model: torch.nn.Module, tasks: Sequence[Any]) -> None:
        super().__init__()
        self.model, self.tasks, self.heads = model, {t.name: t for t in tasks}, model.heads

    def forward(self, batch: Mapping[str, torch.Tensor], tasks: Sequence[str] | None = None
                ) -> tuple[dict[str, torch.Tensor], None]:
        outs, _ = self.model(batch)
        return {t: outs[t] for t in (tasks or outs)}, None

    def predict(self, batch: Mapping[str, torch.Tensor], tasks: Sequence[str] | None = None
                ) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            outs, _ = self(batch, tasks)
        return {t: self.heads[t].predict(v) for t, v in outs.items()}


def run_variant(name: str, a: argparse.Namespace) -> dict[str, Any]:
    ds = open_datasets(a.datasets)
    tasks = [t for t in ds.tasks if ds.has_columns(t)]
    config = EcgMoeConfig.from_spec(a.config, ds.spec)
    torch.manual_seed(a.seed)
    model = build(name, config, tasks)
    train = ds.rows(fold=tuple(range(1, 9)))
    train_s = fit(model, ds, tasks, train, a.epochs, a.batch_size, a.lr, a.seed, a.lead_dropout)
    scored = Scored(model, tasks).eval()
    calibrate_heads(scored, ds, ds.rows(fold=9), tasks, 256, "cpu")
    if a.save and name in SAVED_AS:
        save_model(model, ds.spec, a.save / SAVED_AS[name])
    out: dict[str, Any] = {
        "variant": name, "epochs": a.epochs, "train_windows": len(train),
        "train_s": round(train_s, 1), "parameters": sum(p.numel() for p in model.parameters()),
        "flops_per_record": flops_per_record(model, example_batch(config, 8))}
    if a.ptbxl:
        out["ptbxl"] = real_eval.ptbxl(scored, a.ptbxl, 9, a.bootstrap)
    if a.cinc2017:
        out["cinc2017"] = real_eval.cinc2017(scored, a.cinc2017, 9, a.bootstrap)
    if a.mitdb:
        out["mitdb_held_out"] = real_eval.annotated_windows(scored, a.mitdb, a.bootstrap, [9, 10])
    return out


def summary_line(r: dict[str, Any]) -> str:
    def get(*keys: str) -> Any:
        v: Any = r
        for k in keys:
            v = v.get(k) if isinstance(v, dict) else None
        return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else v

    return (f"| {r['variant']} | {get('ptbxl', 'superdiagnostic', 'macro_auroc')} "
            f"{get('ptbxl', 'superdiagnostic', 'ci')} | {get('ptbxl', 'age', 'mae')} | "
            f"{get('ptbxl', 'sex', 'auroc')} | {get('cinc2017', 'af_binary', 'auroc')} | "
            f"{get('cinc2017', 'af_binary', 'f1')} | {get('cinc2017', 'challenge', 'score')} | "
            f"{r['parameters']:,} | {r['flops_per_record'] / 1e6:.1f} | {r['train_s']} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("datasets", type=Path, nargs="+", help="training datasets (folds 1-8)")
    ap.add_argument("--ptbxl", type=Path)
    ap.add_argument("--cinc2017", type=Path)
    ap.add_argument("--mitdb", type=Path)
    ap.add_argument("--variants", default="ecgmoe,dense,resnet1d")
    ap.add_argument("--config", default="base")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lead-dropout", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--json", type=Path, help="also write every figure here")
    ap.add_argument("--save", type=Path, help="keep the trained ECG-MoE and dense models here")
    a = ap.parse_args()
    results = []
    for name in a.variants.split(","):
        t0 = time.strftime("%Y-%m-%d %H:%M")
        results.append(run_variant(name, a) | {"started": t0})
        print(json.dumps(results[-1]), flush=True)
        if a.json:  # after each variant: a stopped run keeps what it finished
            a.json.write_text(json.dumps(results, indent=1) + "\n")
    print("\n| model | PTB-XL f9 superdiag AUROC [CI] | age MAE | sex AUROC | CinC f9 AF AUROC "
          "| AF F1 | challenge | parameters | MFLOP/record | train s |")
    print("|---" * 10 + "|")
    for r in results:
        print(summary_line(r))


if __name__ == "__main__":
    main()
