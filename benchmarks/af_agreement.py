"""Where `rhythm` and `arrhythmia` disagree on AF, per 10 s window, and which is right.

Run (after `make real-data`; datasets as `name=path` or `name=path:fold,fold`):
  W=data/weights-build; .venv/bin/python benchmarks/af_agreement.py --weights weights \
    cinc2017-f9-10=$W/cinc2017-ds:9,10 ptbxl-f9=$W/ptbxl-ds:9 cpsc2021=$W/cpsc2021-ds \
    mitdb-held-out=$W/mitdb-ds:10 mitdb-all=$W/mitdb-ds
AF by rhythm: its afib probability at or over its threshold; AF by arrhythmia: its most likely
class is afib or afib_rvr (what `predict`'s `rhythm_pred` and `arrhythmia_class` say). Truth:
the windows' rhythm afib label, where known.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from rr_interval import parse

from ecgmoe_cli.io.dataset import open_dataset
from ecgmoe_cli.tasks import ARRHYTHMIA_CLASSES
from ecgmoe_cli.training.outputs import raw_outputs
from ecgmoe_cli.weights import store

AF = [ARRHYTHMIA_CLASSES.index(c) for c in ("afib", "afib_rvr")]


def tp_fp(called: np.ndarray, y: np.ndarray) -> str:
    return f"{(called & (y == 1)).sum()}/{(called & (y == 0)).sum()}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=Path("weights"))
    ap.add_argument("datasets", nargs="+", help="name=path[:fold,fold]")
    a = ap.parse_args()
    model, _, _ = store.load_model(a.weights, ["rhythm", "arrhythmia"], "cpu")
    print(f"{'dataset':16s} {'windows':>7s} {'rhythm AF':>9s} {'arrh. AF':>8s} {'both':>5s} "
          f"{'rhythm only':>11s} {'arrh. only':>10s} | {'true AF':>7s} {'rhythm TP/FP':>12s} "
          f"{'arrh. TP/FP':>11s}")
    for name, path, folds in map(parse, a.datasets):
        ds = open_dataset(path)
        rows = ds.rows(folds)
        raw = raw_outputs(model, ds, rows, ["rhythm", "arrhythmia"], 64, "cpu")
        p_rhythm = model.heads["rhythm"].predict(torch.from_numpy(raw["rhythm"])).numpy()
        p_arr = model.heads["arrhythmia"].predict(torch.from_numpy(raw["arrhythmia"])).numpy()
        by_rhythm = p_rhythm[:, 0] >= model.heads["rhythm"].thresholds[0]
        by_arr = np.isin(p_arr.argmax(1), AF)
        y = (ds.targets(rows, [model.tasks["rhythm"]])["rhythm"][:, 0]
             if ds.has_columns(model.tasks["rhythm"]) else np.full(len(rows), np.nan))

        print(f"{name:16s} {len(rows):7d} {by_rhythm.sum():9d} {by_arr.sum():8d} "
              f"{(by_rhythm & by_arr).sum():5d} {(by_rhythm & ~by_arr).sum():11d} "
              f"{(by_arr & ~by_rhythm).sum():10d} | {int(np.nansum(y)):7d} "
              f"{tp_fp(by_rhythm, y):>12s} {tp_fp(by_arr, y):>11s}")


if __name__ == "__main__":
    main()
