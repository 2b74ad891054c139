"""Which windows a job uses (folds 1-8 train, 9 validation, 10 test), and whether a dataset
fits the weights it is run with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.dataset import Dataset

TRAIN_FOLDS, VAL_FOLD, TEST_FOLD = tuple(range(1, 9)), 9, 10


def check_spec(ds: Dataset, spec: Any, weights_dir: Path) -> None:
    """Weights only read windows cut by their own PreprocessSpec."""
    if spec != ds.spec:
        raise EcgMoeError(f"dataset {ds.path} was preprocessed with spec {ds.spec.hash()} but the "
                          f"weights expect {spec.hash()}; re-run preprocess with the weights' "
                          "spec", weights_dir)


def train_val_rows(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The training (1-8) and validation (9) rows; no training row is an error."""
    train, val = ds.rows(fold=TRAIN_FOLDS), ds.rows(fold=VAL_FOLD)
    if len(train) == 0:
        raise EcgMoeError("no windows in training folds 1-8", ds.path)
    return train, val
