"""Progress without a terminal: plain periodic lines, nothing for a short run (issue 24 item 11)."""

from __future__ import annotations

import io

from rich.console import Console
from typer.testing import CliRunner

from ecgmoe_cli import __version__
from ecgmoe_cli.cli import app
from ecgmoe_cli.progress import Progress


def _plain() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=False, width=200), buf


def test_plain_lines_when_stderr_is_not_a_terminal() -> None:
    console, buf = _plain()
    with Progress("predict", 4, every_s=0, unit="records", console=console) as p:
        for _ in range(4):
            p.update(advance=1, loss=0.5)
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("predict: 1/4 records (25 %), ") and "loss 0.5000" in lines[0]
    assert lines[-1].startswith("predict: 4/4 records (100 %)") and len(lines) == 4
    assert "\x1b" not in buf.getvalue()  # no escape codes, no blank bar lines in a log


def test_a_short_run_prints_nothing_and_a_long_one_a_last_count() -> None:
    console, buf = _plain()
    with Progress("preprocess", 100, console=console) as p:  # 30 s between lines
        for _ in range(100):
            p.update(advance=1)
    assert buf.getvalue() == ""
    console, buf = _plain()
    with Progress("train", None, every_s=0, console=console) as p:
        p.update(5)
        p.every_s = 1e9
        p.update(9)
    first, last = buf.getvalue().splitlines()  # the line at 5, then the final count
    assert first.startswith("train: 5, ") and last.startswith("train: 9, ")


def test_version() -> None:
    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"ecgmoe {__version__}"
