from typer.testing import CliRunner

from ecgmoe_cli.cli import app

runner = CliRunner()


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ["preprocess", "train", "finetune", "evaluate", "predict", "bench", "simulate", "plot"]:
        assert name in result.output
