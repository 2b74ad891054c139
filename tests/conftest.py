"""Shared fixtures: the tiny model and dataset, built once per session, and the real records in
../shared/ecg-real and corpora in ../shared/ecg-train (tests that need them fail loudly without
them, and carry the `real` marker: `pytest -m "not real"` runs on a bare checkout)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REAL_DIR = Path(
    os.environ.get("ECGMOE_REAL_DATA", Path(__file__).resolve().parents[2] / "shared" / "ecg-real")
)
TRAIN_DIR = Path(os.environ.get("ECGMOE_TRAIN_DATA", REAL_DIR.parent / "ecg-train"))


@pytest.fixture(scope="session")
def real_dir() -> Path:
    """The 48 real recordings, read in place (never copied into the project)."""
    if not (REAL_DIR / "records.csv").is_file():
        pytest.fail(f"real ECG records not found at {REAL_DIR}: put shared/ecg-real beside the "
                    "checkout")
    return REAL_DIR


@pytest.fixture(scope="session")
def train_dir() -> Path:
    """The real labelled training corpora (PTB-XL, CinC 2017, MIT-BIH DS1), read in place."""
    if not (TRAIN_DIR / "SOURCES.md").is_file():
        pytest.fail(f"real training data not found at {TRAIN_DIR}: put shared/ecg-train beside "
                    "the checkout")
    return TRAIN_DIR


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random model with the sex and rhythm tasks, saved as predict reads weights."""
    import torch
    from fakes import TINY_SPEC

    from ecgmoe_cli.model.config import EcgMoeConfig
    from ecgmoe_cli.model.ecgmoe import EcgMoe
    from ecgmoe_cli.tasks import TASKS
    from ecgmoe_cli.weights.store import save_model

    torch.manual_seed(0)
    model = EcgMoe(EcgMoeConfig.from_spec("tiny", TINY_SPEC), [TASKS["sex"], TASKS["rhythm"]])
    out = tmp_path_factory.mktemp("weights") / "w"
    save_model(model, TINY_SPEC, out)
    return out


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random backbone without adapters, saved as finetune reads one."""
    import torch
    from fakes import TINY_SPEC

    from ecgmoe_cli.model.config import EcgMoeConfig
    from ecgmoe_cli.model.ecgmoe import EcgMoe
    from ecgmoe_cli.weights.store import save_backbone

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("backbone") / "weights"
    save_backbone(EcgMoe(EcgMoeConfig.from_spec("tiny", TINY_SPEC)), TINY_SPEC, out)
    return out


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 40-record fake dataset (fakes.make_fake_dataset); shared, so tests only read it."""
    from fakes import make_fake_dataset

    return make_fake_dataset(tmp_path_factory.mktemp("data") / "ds", n_records=40)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that asks for the shared real data is marked `real` (`-m "not real"` skips it)."""
    for item in items:
        if {"real_dir", "train_dir"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.real)
