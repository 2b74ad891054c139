"""Checks made before a command writes anything: what `-o` may replace, and whether it can.

A command replaces only what the tool itself wrote (a Parquet report, a dataset with its
`spec.json` and `index.parquet`), only with `--overwrite`, and never a target that is or holds
its input. All of it is checked up front, so a refusal leaves nothing behind.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from ecgmoe_cli.errors import EcgMoeError

_PARQUET_MAGIC = b"PAR1"


def is_parquet_file(path: Path) -> bool:
    """A regular file that starts and ends with Parquet's magic bytes (nothing else is read)."""
    try:
        if not path.is_file() or path.stat().st_size < 8:
            return False
        with open(path, "rb") as f:
            head = f.read(4)
            f.seek(-4, os.SEEK_END)
            return head == _PARQUET_MAGIC and f.read(4) == _PARQUET_MAGIC
    except OSError:
        return False


def is_dataset_dir(path: Path) -> bool:
    """A folder `ecgmoe preprocess` wrote (its spec.json and index.parquet are there)."""
    return (path / "spec.json").is_file() and (path / "index.parquet").is_file()


def refuse_input_inside(out: Path, inputs: Iterable[Path]) -> None:
    """`out` must not be an input nor a folder above one: replacing it would delete the data."""
    target = Path(os.path.abspath(out))
    for item in inputs:
        src = Path(os.path.abspath(item))
        if src == target or target in src.parents:
            what = "is the input" if src == target else f"holds the input {item}"
            raise EcgMoeError(f"output {what}; choose another -o", out)


def check_writable(folder: Path, out: Path | None = None) -> None:
    """Files can be made inside `folder` (created if missing): its nearest existing ancestor
    (or itself) is a folder we may write into. Errors name `out` (default: `folder`)."""
    here = Path(os.path.abspath(folder))
    while not here.exists() and not here.is_symlink() and here != here.parent:
        here = here.parent
    if not here.is_dir():
        raise EcgMoeError(f"cannot write here: {here} is not a folder", out or folder)
    try:  # a real probe: root passes os.access even where nothing can be made (/proc)
        if not os.access(here, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
        os.rmdir(tempfile.mkdtemp(prefix=".ecgmoe-probe-", dir=here))
    except OSError as e:
        raise EcgMoeError(f"cannot write here: {here} is not writable ({e.strerror or e})",
                          out or folder) from None


def check_run_folder(out: Path) -> None:
    """A training run's folder: a folder (new, or an earlier run's) that can be written."""
    if (out.exists() or out.is_symlink()) and not out.is_dir():
        raise EcgMoeError("exists and is not a folder; choose a run folder for -o", out)
    check_writable(out)


def check_report_target(out: Path, own_parts: Iterable[Path], *, overwrite: bool,
                        resume: bool) -> None:
    """A report may replace an earlier report (with --overwrite) and nothing else.

    `own_parts` are the part files this run would replace in a dataset folder (another
    shard's parts are left alone and need nothing).
    """
    if out.is_dir():
        others = [p for p in out.iterdir() if not _report_part(p)]
        if others:
            raise EcgMoeError(f"folder exists and is not a report dataset (it holds "
                              f"{others[0].name}); not replaced", out)
        if any(True for _ in own_parts) and not (overwrite or resume):
            raise EcgMoeError("report exists (pass --overwrite to replace it, or --resume)", out)
    elif out.exists() or out.is_symlink():
        if not is_parquet_file(out):
            raise EcgMoeError("file exists and is not a Parquet report; not replaced", out)
        if not (overwrite or resume):
            raise EcgMoeError("report exists (pass --overwrite to replace it, or --resume)", out)


def _report_part(path: Path) -> bool:
    """A file a report dataset is made of: a sealed part, or a part still being written."""
    name = path.name
    return path.is_file() and not path.is_symlink() and (
        (name.startswith("part-") and name.endswith(".parquet"))
        or (name.startswith(".part-") and ".parquet.tmp-" in name))


def check_dataset_target(out: Path, *, overwrite: bool) -> None:
    """A dataset replaces only an earlier dataset (or an empty folder), with --overwrite."""
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise EcgMoeError("output exists (pass --overwrite to replace it)", out)
        if not (out.is_dir() and (is_dataset_dir(out) or not any(out.iterdir()))):
            raise EcgMoeError("output exists and is not a dataset `ecgmoe preprocess` wrote "
                              "(no spec.json + index.parquet); not replaced", out)
    check_writable(Path(os.path.abspath(out)).parent)


def new_run_dir(kind: str, names: Iterable[str], root: Path = Path("runs")) -> Path:
    """A fresh `runs/<kind>-<names>-<UTC time>/` that does not exist yet (a default output that
    can replace nothing)."""
    stem = f"{kind}-{'+'.join(names)}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    path, n = root / stem, 1
    while path.exists() or path.is_symlink():
        n += 1
        path = root / f"{stem}-{n}"
    return path


class OutputLock:
    """An exclusive lock on one output (`flock` on `.NAME.lock` beside it), held for the run:
    a second run writing the same report (the same shard of it) is refused at once instead of
    mixing or losing rows. The lock file goes when the run ends; a run killed with -9 leaves it,
    but the kernel drops the lock itself, so the next run takes it."""

    def __init__(self, out: Path, tag: str = "") -> None:
        out = Path(os.path.abspath(out))
        self.path = out.with_name(f".{out.name}{tag}.lock")
        self.out = out
        self._fd: int | None = None
        self._made: list[Path] = []  # folders made for the lock, removed with it when empty

    def acquire(self) -> None:
        import fcntl

        check_writable(self.path.parent, self.out)
        here = self.path.parent
        while not here.exists():
            self._made.append(here)
            here = here.parent
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise EcgMoeError("another run is writing this report now (locked by "
                                  f"{self.path.name}); wait for it, or choose another -o",
                                  self.out) from None
            try:  # the holder before us may have removed the file: lock the one in place
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    self._fd = fd
                    return
            except FileNotFoundError:
                pass
            os.close(fd)

    def release(self) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)  # still locked: no one else can hold it now
            os.close(self._fd)
            self._fd = None
        for folder in self._made:  # innermost first; one the run filled stays
            try:
                folder.rmdir()
            except OSError:
                break
