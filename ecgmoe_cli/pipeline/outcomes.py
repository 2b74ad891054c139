"""What a worker hands back for one record: prepared (Done), too long for one block (Long), or
Failed; and `guarded`, the one place a record's failure becomes its error row."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.files import one_line
from ecgmoe_cli.io.records.record import Record

T = TypeVar("T")


@dataclass
class Done:
    """A prepared record with one label dict per window, ready for the dataset."""

    prepared: Any  # pipeline.prepare.Prepared
    labels: list[dict[str, float]]
    fold: int


@dataclass
class Long:
    """A record longer than one block: its consumer prepares it block by block. The Record
    read to find that out comes along within a process (so the file is read once), but never
    through a pipe: a queue of pending results must not hold whole Holter recordings."""

    path: Path
    record: Record | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "record": None}


@dataclass
class Failed:
    """A record that could not be read, prepared or predicted: its row says why."""

    path: str
    record: str
    error: str


def guarded(path: str | Path, job: Callable[[], T]) -> T | Failed:
    """`job()`, or the Failed row of `path`: a project error as its one line, anything else
    with its type (one unforeseen file must not stop a long run)."""
    try:
        return job()
    except EcgMoeError as e:
        return Failed(str(path), Path(path).stem, one_line(str(e)))
    except Exception as e:  # noqa: BLE001 (see the docstring)
        return Failed(str(path), Path(path).stem, one_line(f"{path}: {type(e).__name__}: {e}"))
