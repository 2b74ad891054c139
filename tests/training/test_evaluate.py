"""`ecgmoe evaluate`: per-task metrics by kind, JSON and table output, clear errors."""

from __future__ import annotations

import json

import pytest
from fakes import my_cli
from typer.testing import CliRunner

from ecgmoe_cli.training.loop import FitConfig
from ecgmoe_cli.training.train import train_backbone


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_dataset):
    root = tmp_path_factory.mktemp("ev")
    train_backbone(tiny_dataset, root / "run", "tiny", FitConfig(epochs=2, batch_size=8, lr=3e-3),
                   progress=False)
    return tiny_dataset, root / "run" / "weights"


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
    # the fake records' detected RR is exact: calibration keeps the measurement, not the
    # two-epoch head's correction (residual_weight 0)
    assert t["rr_interval"]["mae"] < 1.0 and t["rr_interval"]["unit"] == "ms"
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


def test_undefined_metrics_are_none_and_left_out_of_the_means():
    """Issue 24 item 5: a label with no positives has no AUROC and no F1 (not 0), and the
    macro figures average only the labels where they exist."""
    import numpy as np

    from ecgmoe_cli.tasks import get_task
    from ecgmoe_cli.training.scoring import score_task

    task = get_task("rhythm")  # afib, tachy, brady, irregular
    y = np.zeros((40, 4))
    y[:20, 0] = 1  # afib: 20 positives; tachy 2; brady none; irregular all
    y[:2, 1] = 1
    y[:, 3] = 1
    p = np.clip(y * 0.8 + 0.1, 0, 1)
    s = score_task(task, p, y, n_boot=0)
    labels = s["labels"]
    assert labels["afib"]["auroc"] == 1.0 and labels["afib"]["f1"] == 1.0
    assert labels["brady"]["auroc"] is None and labels["brady"]["f1"] is None
    assert labels["irregular"]["auroc"] is None and labels["irregular"]["f1"] == 1.0
    assert s["macro_auroc"] == 1.0  # afib and tachy only
    assert s["f1"] == 1.0  # brady's undefined F1 is not averaged in as 0
    warned = " ".join(s["warnings"])
    assert "rhythm/brady: 0 positives" in warned and "F1 undefined" in warned
    assert "rhythm/tachy: only 2 positives" in warned and "afib" not in warned


def test_evaluate_warns_on_a_small_fold_and_shows_undefined_as_na(trained):
    ds, w = trained
    r = CliRunner().invoke(my_cli(), ["evaluate", str(ds), "--weights", str(w),
                                      "--bootstrap", "5"])
    assert r.exit_code == 0, r.output
    assert "warning: sex: only 4 windows scored" in r.stderr
    assert "rhythm/brady: 0 positives" in r.stderr
    brady = next(line for line in r.stdout.splitlines() if "brady" in line)
    assert "AUROC n/a" in brady and "F1 n/a" in brady


@pytest.mark.parametrize("args, needle", [
    (["--batch-size", "0"], "--batch-size must be in [1, 65536], got 0"),
    (["--batch-size", "-1"], "--batch-size"),
    (["--bootstrap", "-1"], "--bootstrap must be in [0, 100000], got -1"),
    (["--bootstrap", "1000000000"], "--bootstrap"),
])
def test_evaluate_refuses_impossible_options_up_front(trained, args, needle):
    """Issue 24 R16: refused before the weights load (no traceback, no 90 s run)."""
    ds, _ = trained
    r = CliRunner().invoke(my_cli(), ["evaluate", str(ds), "--weights", "/nonexistent", *args])
    assert r.exit_code == 1 and needle in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_evaluate_on_a_records_folder_says_to_preprocess_first(trained, tmp_path):
    ds, w = trained
    (tmp_path / "rec.hea").write_text("rec 1 500 5000\n")
    r = CliRunner().invoke(my_cli(), ["evaluate", str(tmp_path), "--weights", str(w)])
    assert r.exit_code == 1 and "run `ecgmoe preprocess` first" in r.output
