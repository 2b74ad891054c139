"""rr_interval MAE per dataset: the model against the measurement it starts from.

Run (after `make real-data`; datasets as `name=path` or `name=path:fold,fold`):
  .venv/bin/python benchmarks/rr_interval.py --weights weights \
    mitdb-held-out=data/weights-build/mitdb-ds:10 svdb=data/weights-build/svdb-ds \
    cpsc2021=data/weights-build/cpsc2021-ds examples=DIR_OF_preprocessed_examples
Per dataset: n windows and records, the model's MAE (and its 95th percentile and worst
window), the detector's mean RR alone (the head's anchor, every beat counted as
`heart_rate_bpm` counts them), its median RR alone (the anchor before 2026-12-06), and the
windows' mean target (trivial). Targets: `y_rr_interval` (for `.atr` records the mean RR of
the reference beats in the window).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from ecgmoe_cli.io.dataset import open_dataset
from ecgmoe_cli.training.losses import anchor_values
from ecgmoe_cli.training.outputs import raw_outputs
from ecgmoe_cli.weights import store


def parse(item: str) -> tuple[str, Path, list[int] | None]:
    name, _, rest = item.partition("=")
    path, _, folds = rest.partition(":")
    return name, Path(path), [int(f) for f in folds.split(",")] if folds else None


def score(model, ds, rows: np.ndarray) -> dict[str, float]:
    y = ds.column("y_rr_interval", rows)
    known = np.isfinite(y)
    rows, y = rows[known], y[known]
    head = model.heads["rr_interval"]
    raw = raw_outputs(model, ds, rows, ["rr_interval"], 64, "cpu")["rr_interval"]
    err = np.abs(head.predict(torch.from_numpy(raw)).numpy()[:, 0] - y)
    records = ds.index.set_index("row").loc[rows, "record"].nunique()

    def alone(measure: str) -> float:
        return float(np.nanmean(np.abs(anchor_values(measure, ds, rows) - y)))

    return {"n_windows": int(len(y)), "n_records": int(records), "mae": float(err.mean()),
            "p95": float(np.percentile(err, 95)), "max": float(err.max()),
            "mean_rr_alone": alone("mean_rr_ms"), "median_rr_alone": alone("median_rr_ms"),
            "trivial": float(np.abs(y - y.mean()).mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=Path("weights"))
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("datasets", nargs="+", help="name=path[:fold,fold]")
    a = ap.parse_args()
    model, _, _ = store.load_model(a.weights, ["rr_interval"], "cpu")
    head = model.heads["rr_interval"]
    print(f"{a.weights}: anchor {head.anchor}, residual_weight {head.residual_weight}")
    print(f"{'dataset':18s} {'windows':>7s} {'records':>7s} {'MAE':>6s} {'p95':>6s} {'max':>7s}"
          f" {'mean RR':>8s} {'median RR':>9s} {'trivial':>8s}  (ms)")
    out = {}
    for name, path, folds in map(parse, a.datasets):
        ds = open_dataset(path)
        s = out[name] = score(model, ds, ds.rows(folds))
        print(f"{name:18s} {s['n_windows']:7d} {s['n_records']:7d} {s['mae']:6.1f} "
              f"{s['p95']:6.1f} {s['max']:7.1f} {s['mean_rr_alone']:8.1f} "
              f"{s['median_rr_alone']:9.1f} {s['trivial']:8.1f}")
    if a.json:
        a.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
