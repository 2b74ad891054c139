import re

from typer.testing import CliRunner

from ecgmoe_cli.cli import app

runner = CliRunner()
COMMANDS = ["preprocess", "simulate", "train", "finetune", "evaluate", "predict", "bench", "plot",
            "info"]


def test_help_lists_every_command() -> None:
    assert sorted(c.name for c in app.registered_commands) == sorted(COMMANDS)
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert re.search(rf"\b{name}\b", result.output), name
