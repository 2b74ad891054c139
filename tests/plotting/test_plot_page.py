"""From a Record to a sheet: windows, lead subsets, missing lead II, short records, the
display filter, and the predictions printed in the header."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.records.record import Record
from ecgmoe_cli.pipeline.predict.schema import pred_labels
from ecgmoe_cli.plotting.page import build_page, display_filter, n_windows
from ecgmoe_cli.plotting.predictions import is_flagged, match_row, prediction_lines
from ecgmoe_cli.plotting.render import draw_page
from ecgmoe_cli.signal.leads import CANONICAL_LEADS

FS = 250.0


def _ecg(seconds: float, bpm: float = 75.0, n_leads: int = 1) -> np.ndarray:
    """Narrow 1 mV spikes at a fixed rate on a slow 1 mV wander: (n_leads, n) mV."""
    t = np.arange(int(seconds * FS)) / FS
    beats = np.arange(0.3, seconds, 60.0 / bpm)
    x = sum(np.exp(-0.5 * ((t - b) / 0.012) ** 2) for b in beats)
    x = x + np.sin(2 * np.pi * 0.1 * t)  # baseline wander a display must not show
    return np.tile(x.astype(np.float32), (n_leads, 1))


def _mapping(names: list[str]) -> SimpleNamespace:
    """The LeadMapping contract (source_index 12 long), names already canonical."""
    idx = [names.index(c) if c in names else None for c in CANONICAL_LEADS]
    return SimpleNamespace(source_index=idx, warnings=[], dropped=[])


def _record(names: list[str], seconds: float, bpm: float = 75.0) -> Record:
    return Record(path="/x/r1.hea", name="r1", signal=_ecg(seconds, bpm, len(names)), fs=FS,
                  lead_names=names)


def _texts(page) -> list[str]:
    fig = draw_page(page, dpi=30)
    return [t.get_text() for t in fig.axes[0].texts]


def test_twelve_leads_window_heart_rate_and_peaks():
    rec = _record(list(CANONICAL_LEADS), 10.0, bpm=75)
    page = build_page(rec, _mapping(list(CANONICAL_LEADS)))
    assert set(page.leads) == set(CANONICAL_LEADS)
    assert page.rhythm[0].label == "II" and page.rhythm[0].signal.shape == (int(10 * FS),)
    assert page.rpeaks.size == 13  # beats at 0.3 + 0.8 k s inside 10 s
    assert any("heart rate 75 bpm" in line for line in page.info)
    assert "not recorded" not in _texts(page)


def test_bigeminy_example_marks_every_beat_and_its_rate():
    """Example 00008 (ventricular bigeminy, generated mean RR 765.9 ms): the plot marks the
    PVCs too, and its heart rate is the report's (it marked the 6 sinus beats, 38 bpm)."""
    from pathlib import Path

    from ecgmoe_cli.io.records.read import read_record
    from ecgmoe_cli.signal.leads import canonicalize

    repo = Path(__file__).resolve().parents[2]
    rec = read_record(repo / "examples/records/records500/00000/00008_hr")
    page = build_page(rec, canonicalize(rec.lead_names))
    assert page.rpeaks.size == 12
    assert any("heart rate 78 bpm" in line for line in page.info), page.info


def test_lead_subset_draws_labelled_empty_slots_and_rhythm_fallback():
    rec = _record(["V5", "aVL"], 10.0)
    page = build_page(rec, _mapping(["V5", "aVL"]))
    texts = _texts(page)
    assert texts.count("not recorded") == 10
    for lead in CANONICAL_LEADS:
        assert lead in texts  # every slot keeps its label, recorded or not
    # no lead II: the strip shows the first available canonical lead and says so
    assert page.rhythm[0].label.startswith("aVL") and "lead II not recorded" in page.rhythm[0].label
    assert any("lead II not recorded, showing aVL" in line for line in page.info)


def test_unknown_lead_names_become_strips():
    rec = _record(["ECG 1", "ECG 2", "ECG 3"], 8.0)
    page = build_page(rec, SimpleNamespace(source_index=[None] * 12, warnings=[], dropped=[]))
    assert not page.grid_rows and not page.leads
    assert [s.label for s in page.rhythm] == ["ECG 1", "ECG 2", "ECG 3"]
    assert any("--lead-map" in line for line in page.info)


def test_dropped_channels_are_not_drawn():
    rec = _record(["II", "ABP"], 10.0)
    page = build_page(rec, SimpleNamespace(source_index=_mapping(["II"]).source_index,
                                           warnings=[], dropped=["ABP"]))
    assert [s.label for s in page.rhythm] == ["II"]


def test_short_record_draws_what_exists():
    rec = _record(["II"], 4.0)
    assert n_windows(rec) == 1
    page = build_page(rec, _mapping(["II"]))
    assert page.leads["II"].shape == (int(4 * FS),)
    assert any("shown 0.0-4.0 s" in line for line in page.info)
    draw_page(page, dpi=30)  # slots after 4 s stay empty without error


def test_long_record_window_choice_and_range():
    rec = _record(["II"], 35.0)
    assert n_windows(rec) == 4
    page = build_page(rec, _mapping(["II"]), window=3)
    assert page.leads["II"].shape == (int(5 * FS),)  # the last window holds what is left
    assert any("shown 30.0-35.0 s (window 3 of 4, counted from 0)" in line for line in page.info)
    # peaks are window-relative: the beat at 30.7 s is at 0.7 s
    assert page.rpeaks.min() == pytest.approx(0.7 * FS, abs=3)
    with pytest.raises(EcgMoeError, match=r"window 4 is out of range.*0-3"):
        build_page(rec, _mapping(["II"]), window=4)


def test_display_filter_removes_wander_keeps_qrs_and_gaps():
    x = _ecg(10.0)
    x[0, 1000:1100] = np.nan
    y = display_filter(x, FS)
    assert np.isnan(y[0, 1000:1100]).all() and np.isfinite(y[0, :1000]).all()
    # the slow wander (1 mV) is gone: between beats the trace stays near zero
    quiet = y[0, int(0.6 * FS) : int(0.9 * FS)]
    assert np.abs(quiet).max() < 0.15
    assert np.nanmax(y[0]) > 0.5  # the spikes survive


def test_prediction_lines_from_a_report_row():
    row = {
        "path": "/d/r1.hea", "record": "r1", "status": "ok",
        "rhythm_pred": "afib,tachy", "rhythm_afib_prob": 0.91, "rhythm_tachy_prob": 0.66,
        "infarction_pred": "", "conduction_pred": np.array(["rbbb"]), "conduction_rbbb_prob": 0.7,
        "arrhythmia_class": "afib_rvr", "arrhythmia_prob": 0.72,
        "age_years": 66.6, "rr_interval_ms": float("nan"),
    }
    lines = prediction_lines(row)
    assert "rhythm: afib 0.91, tachy 0.66" in lines
    assert "conduction: rbbb 0.70" in lines
    assert "arrhythmia: afib_rvr 0.72" in lines
    assert "age 67 years" in lines
    assert "no findings: infarction" in lines
    assert is_flagged(row)
    assert not is_flagged({**row, "status": "error"})
    assert not is_flagged({"status": "ok", "rhythm_pred": None, "st_t_pred": []})
    assert pred_labels(" a, ,b ") == ["a", "b"] and pred_labels(float("nan")) == []


def test_match_row_by_path_then_name(tmp_path):
    from pathlib import Path

    rows = [{"path": str(tmp_path / "a.hea"), "record": "a"},
            {"path": "elsewhere/b", "record": "b"}]
    assert match_row(rows, tmp_path / "a", "zzz") is rows[0]  # same file, extension aside
    assert match_row(rows, Path("/other/b.hea"), "b") is rows[1]
    assert match_row(rows, Path("/other/c.hea"), "c") is None
    windows = [{"path": "/d/a.hea", "record": "a", "window": w} for w in range(3)]
    assert match_row(windows, Path("/d/a.hea"), "a", window=2) is windows[2]
