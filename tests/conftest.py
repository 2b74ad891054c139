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
