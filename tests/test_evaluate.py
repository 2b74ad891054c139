"""`ecgmoe evaluate`: per-task metrics by kind, JSON and table output, clear errors."""

from __future__ import annotations

import json

import pytest
from fakes import make_fake_dataset, my_cli
from typer.testing import CliRunner

from ecgmoe_cli.training.loop import FitConfig
from ecgmoe_cli.training.runs import train_backbone


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("ev")
    ds = make_fake_dataset(root / "ds", n_records=40)
    train_backbone(ds, root / "run", "tiny", FitConfig(epochs=2, batch_size=8, lr=3e-3),
                   progress=False)
    return ds, root / "run" / "weights"


def test_evaluate_json_has_the_metrics_of_each_kind(trained):
    ds, w = trained
    r = CliRunner().invoke(my_cli(), ["evaluate", str(ds), "--weights", str(w), "--json",
                                      "--bootstrap", "20"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["fold"] == 10 and res["n_windows"] == 4
    t = res["tasks"]
    assert set(t) == {"sex", "rr_interval", "arrhythmia", "rhythm"}
    assert {"macro_auroc", "f1", "ece", "labels"} <= set(t["sex"])
    female = t["sex"]["labels"]["female"]
    assert 0 <= female["auroc"] <= 1 and len(female["auroc_ci"]) == 2
    assert {"accuracy", "macro_f1"} <= set(t["arrhythmia"])
    assert t["rr_interval"]["mae"] > 0 and t["rr_interval"]["unit"] == "ms"
    lo, hi = t["rr_interval"]["mae_ci"]
    assert lo <= t["rr_interval"]["mae"] <= hi
    assert t["rhythm"]["labels"]["brady"]["auroc"] is None  # one class only: no AUROC


def test_evaluate_table_and_task_selection(trained):
    ds, w = trained
    r = CliRunner().invoke(my_cli(), ["evaluate", str(ds), "--weights", str(w), "--tasks",
                                      "sex,rr_interval", "--fold", "9", "--bootstrap", "10"])
    assert r.exit_code == 0, r.output
    assert "sex" in r.stdout and "rr_interval" in r.stdout and "arrhythmia" not in r.stdout


def test_evaluate_errors_are_one_line(trained, tmp_path):
    ds, w = trained
    r = CliRunner().invoke(my_cli(), ["evaluate", str(ds), "--weights", str(w), "--tasks", "age"])
    assert r.exit_code == 1 and "no adapter" in r.output
    r = CliRunner().invoke(my_cli(), ["evaluate", str(tmp_path / "none"), "--weights", str(w)])
    assert r.exit_code == 1 and "dataset not found" in r.output


def test_evaluate_all_folds_and_lead_subsets(trained):
    ds, w = trained
    base = ["evaluate", str(ds), "--weights", str(w), "--json", "--bootstrap", "0",
            "--tasks", "sex"]
    every = json.loads(CliRunner().invoke(my_cli(), [*base, "--fold", "all"]).stdout)
    assert every["fold"] is None and every["n_windows"] == 40
    full = json.loads(CliRunner().invoke(my_cli(), base).stdout)
    one = json.loads(CliRunner().invoke(my_cli(), [*base, "--leads", "I"]).stdout)
    assert one["leads"] == ["I"] and full["leads"] == "all"
    assert one["tasks"]["sex"]["labels"] != full["tasks"]["sex"]["labels"]  # other inputs
    r = CliRunner().invoke(my_cli(), [*base, "--leads", "V9"])
    assert r.exit_code == 1 and "unknown leads" in r.output
