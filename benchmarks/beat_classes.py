"""AAMI beat classes, leave-records-out on MIT-BIH DS1: the beat head's confusion matrix, Se, PPV.

Run: .venv/bin/python benchmarks/beat_classes.py [--weights weights]
     [--data ../shared/ecg-train/mitdb] [--folds 22] [--json out.json] [--cache beats.npz]
Each fold trains a fresh head (the shipped recipe, `ecgmoe finetune --task beat_class`) on the
other folds' records and classifies the held-out records' detected beats (22 folds: leave one
record out). Beats are scored where a detected beat lies within 150 ms of an annotated one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from ecgmoe_cli.io.records.discover import records_under
from ecgmoe_cli.training.beat_class import (
    BeatFit,
    BeatSet,
    cross_validate,
    encode_records,
    held_out_metrics,
)
from ecgmoe_cli.weights import store

SHARED = Path(os.environ.get("ECGMOE_TRAIN_DATA",
                             Path(__file__).resolve().parents[2] / "shared" / "ecg-train"))


def save_set(data: BeatSet, path: Path) -> None:
    np.savez(path, relative=data.relative, features=data.features, label=data.label,
             record=data.record.astype(str), in_af=data.in_af,
             annotated=np.array(json.dumps(data.annotated)),
             fs=np.array(data.fs))


def load_set(path: Path) -> BeatSet:
    z = np.load(path, allow_pickle=False)
    return BeatSet(z["relative"], z["features"], z["label"], z["record"], z["in_af"],
                   json.loads(str(z["annotated"])), float(z["fs"]))


def table(m: dict) -> str:
    """The confusion matrix and per-class Se / PPV as markdown."""
    k = m["classes"]
    lines = ["| reference \\ predicted | " + " | ".join(k) + " | n |",
             "|---|" + "---|" * (len(k) + 1)]
    for name, row in zip(k, m["confusion"]):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + f" | {sum(row)} |")
    lines += ["", "| class | n | Se | PPV |", "|---|---|---|---|"]
    for name in k:
        p = m["per_class"][name]
        se = "-" if p["se"] is None else f"{100 * p['se']:.1f}"
        ppv = "-" if p["ppv"] is None else f"{100 * p['ppv']:.1f}"
        lines.append(f"| {name} | {p['n']} | {se} | {ppv} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=Path("weights"))
    ap.add_argument("--data", type=Path, default=SHARED / "mitdb")
    ap.add_argument("--folds", type=int, default=22)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--cache", type=Path, help="Encoded beats (.npz) to reuse or write: for "
                    "trying head settings without encoding again (same weights and data only).")
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.cache and args.cache.is_file():
        data = load_set(args.cache)
    else:
        model, spec, _ = store.load_model(args.weights, tasks=[])
        data = encode_records(records_under(args.data), model, spec)
        if args.cache:
            save_set(data, args.cache)
    t1 = time.perf_counter()
    pred = cross_validate(data, args.folds, BeatFit(), progress=lambda i, n: print(
        f"fold {i}/{n} {time.perf_counter() - t1:.0f} s", file=sys.stderr, flush=True))
    m = held_out_metrics(data, pred, args.folds)
    m["seconds"] = {"encode": round(t1 - t0, 1), "folds": round(time.perf_counter() - t1, 1)}
    print(f"{len(data.annotated)} records, {m['n']} matched beats "
          f"({m['unmatched_detections']} detections without a reference beat), "
          f"{args.folds} record folds; encode {m['seconds']['encode']} s, "
          f"folds {m['seconds']['folds']} s\n")
    print(table(m))
    o = m["outside_af"]
    print(f"\nThe {o['n']} beats outside annotated AF episodes (inside them `predict` calls no "
          "beat S):\n")
    print(table(o))
    print("\nV beats per record (matched reference / predicted): " + ", ".join(
        f"{r} {v['V_ref']}/{v['V_pred']}" for r, v in m["per_record"].items()))
    if args.json:
        args.json.write_text(json.dumps(m, indent=2) + "\n")


if __name__ == "__main__":
    main()
