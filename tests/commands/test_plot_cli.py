"""`ecgmoe plot` end to end on real records: files written at the sheet's size, windows of long
records, lead maps, report predictions in the header, a whole report, one-line errors."""

from __future__ import annotations

import re

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread
from typer.testing import CliRunner

from ecgmoe_cli.cli import app

DPI = "40"  # small and fast; geometry at a readable dpi is in test_plot_geometry.py
runner = CliRunner()


def _plot(*args: str):
    return runner.invoke(app, ["plot", *args, "--dpi", DPI])


def test_twelve_lead_png(real_dir, tmp_path):
    res = _plot(str(real_dir / "cinc2021/E07505.hea"), "-o", f"{tmp_path}/")
    assert res.exit_code == 0, res.output
    png = tmp_path / "E07505.png"
    img = imread(png)
    assert abs(img.shape[1] - 297 / 25.4 * 40) < 1 and abs(img.shape[0] - 210 / 25.4 * 40) < 1
    rgb = img[..., :3]  # grey-to-black pixels: traces and labels (the grid is red, paper white)
    dark = (rgb.max(axis=-1) < 0.75) & (rgb.max(axis=-1) - rgb.min(axis=-1) < 0.15)
    h, w = dark.shape
    quarters = [dark[: h // 2, : w // 2], dark[: h // 2, w // 2:], dark[h // 2:, : w // 2],
                dark[h // 2:, w // 2:]]
    assert all(q.mean() > 0.01 for q in quarters)  # traces drawn all over the sheet


def test_long_record_window_and_pdf(real_dir, tmp_path):
    out = tmp_path / "mitdb100.pdf"
    res = _plot(str(real_dir / "wfdb-sample/100.hea"), "-o", str(out), "--window", "3")
    assert res.exit_code == 0, res.output
    box = re.search(rb"/MediaBox \[\s*0 0 ([\d.]+) ([\d.]+)", out.read_bytes())
    assert box and float(box.group(1)) / 72 * 25.4 == pytest.approx(297, abs=0.1)
    res = _plot(str(real_dir / "wfdb-sample/100.hea"), "-o", str(out), "--window", "181")
    assert res.exit_code == 1
    assert "window 181 is out of range" in res.output and "Traceback" not in res.output


def test_report_predictions_in_header(real_dir, tmp_path):
    rec = real_dir / "wfdb-sample/test01_00s.hea"
    report = tmp_path / "r.parquet"
    pd.DataFrame([{"path": str(rec), "record": "test01_00s", "status": "ok",
                   "rhythm_pred": "tachy", "rhythm_tachy_prob": 0.87}]).to_parquet(report)
    out = tmp_path / "t.svg"
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text: searchable
        res = _plot(str(rec), "-o", str(out), "--report", str(report),
                    "--lead-map", "ECG 1=II")
    assert res.exit_code == 0, res.output
    svg = out.read_text()
    assert "rhythm: tachy 0.87" in svg
    assert "not recorded" in svg  # ECG 1 drawn as II, the other slots labelled empty


def test_whole_report_draws_flagged_rows_only(real_dir, tmp_path):
    cinc = real_dir / "cinc2021"
    report = tmp_path / "r.parquet"
    pd.DataFrame([
        {"path": str(cinc / "E07505.hea"), "record": "E07505", "status": "ok",
         "rhythm_pred": "brady", "rhythm_brady_prob": 0.8},
        {"path": str(cinc / "E07506.hea"), "record": "E07506", "status": "ok",
         "rhythm_pred": "", "rhythm_brady_prob": 0.1},
        {"path": str(cinc / "nope.hea"), "record": "nope", "status": "error",
         "rhythm_pred": None, "rhythm_brady_prob": np.nan},
    ]).to_parquet(report)
    res = _plot("--report", str(report), "-o", str(tmp_path / "figs"))
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["E07505.png"]


def test_user_errors_are_one_line(real_dir, tmp_path):
    rec = str(real_dir / "cinc2021/E07505.hea")
    res = _plot(rec, "-o", str(tmp_path / "a.png"), "--weights", str(tmp_path))
    assert res.exit_code == 1 and "backbone.json" in res.output and "Traceback" not in res.output
    res = _plot("-o", str(tmp_path / "a.png"))
    assert res.exit_code == 1 and "nothing to draw" in res.output
    res = _plot(str(tmp_path / "missing.hea"), "-o", str(tmp_path / "a.png"))
    assert res.exit_code == 1 and "Traceback" not in res.output
    res = _plot(rec, "-o", str(tmp_path / "a.png"), "--format", "pdf")
    assert res.exit_code == 1 and "ends in .png but --format is pdf" in res.output
    res = _plot(rec, "-o", str(tmp_path / "a.png"), "--lead-map", "II")
    assert res.exit_code == 1 and "NAME=LEAD" in res.output
    res = _plot(rec, "-o", str(tmp_path / "a.png"), "--lead-map", "ECG 1=V7")
    assert res.exit_code == 1 and "'V7' is not one of" in res.output


def test_weights_predict_the_record_for_the_header(real_dir, tmp_path):
    import torch

    from ecgmoe_cli.model.config import EcgMoeConfig
    from ecgmoe_cli.model.ecgmoe import EcgMoe
    from ecgmoe_cli.signal.spec import PreprocessSpec
    from ecgmoe_cli.tasks import get_task
    from ecgmoe_cli.weights.store import save_model

    torch.manual_seed(0)
    spec = PreprocessSpec()
    model = EcgMoe(EcgMoeConfig.from_spec("tiny", spec), [get_task("rhythm")])
    model.heads["rhythm"].thresholds = [0.0] * 4  # every label called: all in the header
    save_model(model, spec, tmp_path / "w")
    out = tmp_path / "t.svg"
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        res = _plot(str(real_dir / "cinc2021/E07505.hea"), "-o", str(out), "--weights",
                    str(tmp_path / "w"))
    assert res.exit_code == 0, res.output
    assert "rhythm: afib" in out.read_text()
