"""`ecgmoe simulate`: a synthetic PTB-XL-shaped corpus of labelled 12-lead ECGs."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from ecgmoe_cli.commands.common import console
from ecgmoe_cli.errors import EcgMoeError


def _swap_in(tmp: Path, out: Path, overwrite: bool) -> None:
    """Replace `out` by the finished `tmp` folder (rename, so readers never see half a corpus)."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None and overwrite:
        shutil.rmtree(old, ignore_errors=True)


def run(
    out_dir: Annotated[Path, typer.Argument(metavar="OUT_DIR",
                                            help="Folder to write the corpus into.")],
    n: Annotated[int, typer.Option("-n", "--records", min=1, help="Number of records.")] = 1000,
    seed: Annotated[int, typer.Option(min=0, help="Corpus seed: same seed, same bytes.")] = 0,
    fs: Annotated[float, typer.Option(min=100, max=2000, help="Sampling rate, Hz.")] = 500.0,
    duration: Annotated[float, typer.Option(min=2, max=120, help="Record length, s.")] = 10.0,
    workers: Annotated[int, typer.Option(min=0, help="Worker processes (0 = one per core).")] = 0,
    showcase: Annotated[bool, typer.Option(
        help="Curated findings (record i shows showcase case i mod 8) for a small demo "
             "corpus.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace OUT_DIR if it exists.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")
                     ] = False,
) -> None:
    """Write N records as records500/NNNNN/NNNNN_hr.{hea,dat} plus ptbxl_database.csv."""
    from ecgmoe_cli.progress import Progress
    from ecgmoe_cli.simulate.tree import default_workers, write_tree

    out = out_dir.expanduser()
    if out.exists() and not out.is_dir():
        raise EcgMoeError("exists and is not a folder", out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise EcgMoeError("folder is not empty; pass --overwrite to replace it", out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    k = workers or default_workers()
    try:
        with Progress("simulate", n, not quiet, unit="records") as bar:
            rows = write_tree(tmp, n, seed, fs, duration, k,
                              progress=lambda m: bar.update(advance=m), showcase=showcase)
        if out.exists() and not any(out.iterdir()):
            out.rmdir()
        _swap_in(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not quiet:
        normal = sum("NORM" in r["scp_codes"] for r in rows)
        classes = Counter(r["arrhythmia"] for r in rows)
        console.print(f"wrote {n} records to {out} ({normal / n:.0%} normal; "
                      f"{', '.join(f'{c} {m}' for c, m in classes.most_common(5))})")
