"""prepare_record: windows, lead masks, R-peaks and flags on real records of every shape."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.records.read import read_record
from ecgmoe_cli.io.records.record import Record
from ecgmoe_cli.pipeline import prepare as prep
from ecgmoe_cli.pipeline.prepare import (
    prepare_chunks,
    prepare_from_record,
    prepare_record,
    window_starts,
)
from ecgmoe_cli.signal.leads import CANONICAL_LEADS
from ecgmoe_cli.signal.spec import PreprocessSpec

SPEC = PreprocessSpec()
W, K = SPEC.window_samples, SPEC.max_beats


def _check_shapes(p: prep.Prepared) -> None:
    nw = p.signal.shape[0]
    assert p.signal.shape == (nw, 12, W) and p.signal.dtype == np.float32
    assert p.lead_mask.shape == (nw, 12) and p.lead_mask.dtype == bool
    assert p.n_valid.shape == (nw,) and p.n_valid.dtype == np.int32
    assert p.rpeaks.shape == (nw, K) and p.rpeaks.dtype == np.int32
    assert p.rr.shape == (nw, K, 4) and p.rr.dtype == np.float32
    assert p.window_start_s.shape == (nw,)
    assert np.isfinite(p.signal).all() and (p.signal[~p.lead_mask] == 0).all()
    assert 0 <= p.quality <= 1
    r = p.rpeaks
    assert ((r == -1) | ((r >= 0) & (r < p.n_valid[:, None]))).all()
    assert ((r == -1) == (p.rr.sum(axis=2) == 0)).all() or p.n_beats < 2


@pytest.mark.parametrize("name,fs,nw,leads", [
    ("cinc2021/E07505", 500, 1, list(CANONICAL_LEADS)),
    ("ptbxl/00001_lr", 100, 1, list(CANONICAL_LEADS)),
    ("ludb/1", 500, 1, list(CANONICAL_LEADS)),
    ("wfdb-sample/s0010_re", 1000, 4, list(CANONICAL_LEADS)),  # 38.4 s: 3 + a padded tail
    ("wfdb-sample/a103l", 250, 33, ["II"]),  # II, V (unnamed precordial), PLETH
    ("cpsc2021/data_101_6", 200, 11, ["I", "II"]),
])
def test_real_records_of_every_rate_and_lead_set(real_dir: Path, name: str, fs: float, nw: int,
                                                 leads: list[str]) -> None:
    p = prepare_record(real_dir / f"{name}.hea", SPEC)
    _check_shapes(p)
    assert p.fs_in == fs and p.signal.shape[0] == nw and p.leads_used == leads
    assert p.lead_mask[:, [CANONICAL_LEADS.index(x) for x in leads]].any()
    assert 30 < p.heart_rate_bpm < 200 and p.n_beats > 0 and "no_beats" not in p.flags


def test_unknown_lead_names_feed_lead_ii_with_a_warning(real_dir: Path) -> None:
    p = prepare_record(real_dir / "wfdb-sample/test01_00s.hea", SPEC)  # "ECG 1" .. "ECG 4", 8 s
    _check_shapes(p)
    assert p.leads_used == ["II"] and "lead_guessed" in p.flags and "padded" in p.flags
    assert "used as lead II" in p.lead_warnings[0]
    assert p.signal.shape[0] == 1 and p.n_valid[0] == 8 * SPEC.fs
    assert (p.signal[0, 1, int(p.n_valid[0]):] == 0).all()


def test_lead_map_overrides_the_guess(real_dir: Path) -> None:
    p = prepare_record(real_dir / "wfdb-sample/test01_00s.hea", SPEC,
                       lead_map={"ECG 1": "V1", "ECG 2": "V2"})
    assert p.leads_used == ["II", "V1", "V2"]  # ECG 3 is still the first unnamed channel
    p = prepare_record(real_dir / "wfdb-sample/test01_00s.hea", SPEC,
                       lead_map={"ECG 1": "V1", "ECG 2": "V2", "ECG 3": "none", "ECG 4": "-"})
    assert p.leads_used == ["V1", "V2"] and "lead_guessed" not in p.flags


def test_record_with_nan_gaps(real_dir: Path) -> None:
    rec = read_record(real_dir / "wfdb-sample/v102s.hea")
    assert np.isnan(rec.signal).any()
    p = prepare_from_record(rec, SPEC)
    _check_shapes(p)
    assert "nan_repaired" in p.flags


def test_long_gap_masks_the_lead_in_that_window_only() -> None:
    t = np.arange(30 * 500) / 500
    x = np.tile(np.sin(2 * np.pi * 1.2 * t) ** 31, (2, 1)).astype(np.float32)
    x[1, 500 * 12:500 * 18] = np.nan  # 6 s of lead V1 missing in the second window
    p = prepare_from_record(Record("r", "r", x, 500.0, ["II", "V1"]), SPEC)
    v1 = CANONICAL_LEADS.index("V1")
    assert p.lead_mask[:, v1].tolist() == [True, False, True]
    assert p.lead_mask[:, 1].all() and "leads_masked" in p.flags


def test_flat_and_empty_records_are_errors() -> None:
    with pytest.raises(EcgMoeError, match="flat"):
        prepare_from_record(Record("z", "z", np.zeros((2, 5000), np.float32), 500.0,
                                   ["I", "II"]), SPEC)
    with pytest.raises(EcgMoeError, match="finite"):
        prepare_from_record(Record("n", "n", np.full((1, 5000), np.nan, np.float32), 500.0,
                                   ["II"]), SPEC)
    with pytest.raises(EcgMoeError, match="no ECG lead"):
        prepare_from_record(Record("p", "p", np.ones((1, 5000), np.float32), 500.0,
                                   ["PLETH"]), SPEC)


def test_no_beats_is_a_flag_not_an_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prep, "detect_rpeaks", lambda x, fs: np.zeros(0, np.int64))
    x = np.random.default_rng(0).normal(0, 0.2, (1, 2500)).astype(np.float32)
    p = prepare_from_record(Record("q", "q", x, 250.0, ["II"]), SPEC)
    assert "no_beats" in p.flags and (p.rpeaks == -1).all() and np.isnan(p.heart_rate_bpm)


def test_window_layout() -> None:
    assert window_starts(100, SPEC).tolist() == [0]
    assert window_starts(2500, SPEC).tolist() == [0]
    assert window_starts(2500 + 1000, SPEC).tolist() == [0]  # 4 s tail < min_tail_s
    assert window_starts(2500 + 1500, SPEC).tolist() == [0, 2500]  # 6 s tail kept
    assert window_starts(7500, SPEC).tolist() == [0, 2500, 5000]


def test_long_record_in_chunks_matches_whole(real_dir: Path) -> None:
    rec = read_record(real_dir / "svdb/800.hea")  # 30 min, 128 Hz
    whole = prepare_from_record(rec, SPEC)
    chunks = list(prepare_chunks(rec, SPEC, chunk_s=300.0))
    assert len(chunks) == 6 and whole.signal.shape[0] == 180
    joined = np.concatenate([c.signal for c in chunks])
    assert joined.shape == whole.signal.shape
    assert sum(c.n_beats for c in chunks) == pytest.approx(whole.n_beats, abs=3)
    # away from seams the cleaned signal is the same whichever way it was cut
    np.testing.assert_allclose(joined[:, :, 500:-500], whole.signal[:, :, 500:-500], atol=0.02)
    assert np.concatenate([c.window_start_s for c in chunks]).tolist() == \
        whole.window_start_s.tolist()


def test_heart_rate_of_the_example_records_is_their_rr_label() -> None:
    """heart_rate_bpm counts every beat: it is 60000 / the generated mean RR of each example,
    the bigeminy record 00008 included (the sinus beats alone read 38 bpm)."""
    import csv

    root = Path(__file__).resolve().parents[2] / "examples" / "records"
    rows = list(csv.DictReader((root / "ptbxl_database.csv").open()))
    assert any(r["arrhythmia"] == "pvc" for r in rows)
    for r in rows:
        p = prepare_from_record(read_record(root / r["filename_hr"]), SPEC)
        assert p.heart_rate_bpm == pytest.approx(60000 / float(r["rr_interval"]), abs=1.0), r
