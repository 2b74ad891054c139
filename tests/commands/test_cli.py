import re
import threading

import pytest
import typer
from typer.testing import CliRunner

from ecgmoe_cli.cli import app
from ecgmoe_cli.commands.common import cli_errors

runner = CliRunner()
COMMANDS = ["preprocess", "simulate", "train", "finetune", "evaluate", "predict", "bench", "plot",
            "info"]


def test_help_lists_every_command() -> None:
    assert sorted(c.name for c in app.registered_commands) == sorted(COMMANDS)
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert re.search(rf"\b{name}\b", result.output), name


def test_an_error_raised_while_ctrl_c_unwinds_reads_as_interrupted() -> None:
    """Ctrl-C inside `Condition.wait` can surface as the RuntimeError of the `with` around
    it; the command still ends "interrupted" with 130, and other errors stay errors."""
    def broken_by_ctrl_c() -> None:
        lock = threading.Lock()
        try:
            raise KeyboardInterrupt
        finally:
            lock.release()  # RuntimeError: release unlocked lock, KeyboardInterrupt its context

    with pytest.raises(typer.Exit) as e:
        cli_errors(broken_by_ctrl_c)()
    assert e.value.exit_code == 130

    def plain_bug() -> None:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        cli_errors(plain_bug)()
