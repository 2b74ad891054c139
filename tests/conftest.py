"""Shared fixtures: the real records in ../shared/ecg-real (tests fail loudly without them)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REAL_DIR = Path(
    os.environ.get("ECGMOE_REAL_DATA", Path(__file__).resolve().parents[2] / "shared" / "ecg-real")
)


@pytest.fixture(scope="session")
def real_dir() -> Path:
    """The 48 real recordings, read in place (never copied into the project)."""
    if not (REAL_DIR / "records.csv").is_file():
        pytest.fail(f"real ECG records not found at {REAL_DIR}: put shared/ecg-real beside the checkout")
    return REAL_DIR


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random model with the sex and rhythm tasks, saved as predict reads weights."""
    import torch
    from fakes import TINY_SPEC

    from ecgmoe_cli.model.config import EcgMoeConfig
    from ecgmoe_cli.model.ecgmoe import EcgMoe
    from ecgmoe_cli.tasks import TASKS
    from ecgmoe_cli.weights import save_model

    torch.manual_seed(0)
    model = EcgMoe(EcgMoeConfig.from_spec("tiny", TINY_SPEC), [TASKS["sex"], TASKS["rhythm"]])
    out = tmp_path_factory.mktemp("weights") / "w"
    save_model(model, TINY_SPEC, out)
    return out
