"""A small dataset holding N seeded windows of the test fold (10) of a bigger one, same format.

    .venv/bin/python benchmarks/test_subset.py data/weights-build/sim-ds SUBSET --n 400

For scoring where the whole dataset cannot travel (a lent GPU machine takes 64 MiB: 400
windows of the default spec are 24 MB); `ecgmoe bench --data SUBSET` reads it as any dataset.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from ecgmoe_cli.io.dataset import open_dataset
from ecgmoe_cli.training.folds import TEST_FOLD


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    ds = open_dataset(args.source)
    index = ds.index
    test = index[(index["status"] == "ok") & (index["fold"] == TEST_FOLD)]
    pick = test.sample(n=min(args.n, len(test)), random_state=args.seed).sort_values("row")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in ("spec.json", "tasks.json"):
        shutil.copy(args.source / name, args.out / name)
    rows = pick["row"].to_numpy()
    for name, arr in ds.arrays.items():
        np.save(args.out / f"{name}.npy", np.ascontiguousarray(arr[rows]))
    pick.assign(row=np.arange(len(pick))).to_parquet(args.out / "index.parquet", index=False)
    print(f"{args.out}: {len(open_dataset(args.out))} windows of fold {TEST_FOLD}")


if __name__ == "__main__":
    main()
