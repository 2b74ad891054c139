"""`predict --beats` and the Holter columns end to end, and `finetune --task beat_class`, on
generated WFDB records with beat annotations and tiny random weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from ecgmoe_cli.model.beat_head import BeatHead, BeatHeadConfig
from ecgmoe_cli.model.inference import WindowOutputs
from ecgmoe_cli.pipeline.predict.beats import af_episodes, af_spans, record_beats
from ecgmoe_cli.pipeline.predict.rows import RowContext
from ecgmoe_cli.tasks import TASKS
from ecgmoe_cli.weights.meta import read_backbone_meta
from ecgmoe_cli.weights.store import save_beat_head

FS = 250.0


def write_annotated(folder: Path, name: str, seconds: float = 40.0, seed: int = 0) -> int:
    """A 2-lead WFDB record with a .atr: sinus beats and every 4th beat a wide, early PVC.
    Returns the number of annotated beats."""
    import wfdb

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * FS)) / FS
    x = rng.normal(0, 0.02, (t.size, 2))
    beats, symbols, at = [], [], 0.4
    while at < seconds - 0.5:
        pvc = len(beats) % 4 == 3
        width, amp = (0.022, -1.8) if pvc else (0.012, 1.2)
        x += amp * np.exp(-((t - at) ** 2) / (2 * width ** 2))[:, None] * [1.0, 0.6]
        beats.append(int(round(at * FS)))
        symbols.append("V" if pvc else "N")
        at += 0.55 if len(beats) % 4 == 3 else 0.85
    folder.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(name, fs=FS, units=["mV", "mV"], sig_name=["MLII", "V1"], p_signal=x,
                fmt=["16", "16"], write_dir=str(folder))
    wfdb.wrann(name, "atr", np.array(beats), symbols, write_dir=str(folder), fs=FS)
    return len(beats)


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("annotated")
    for i in range(3):
        write_annotated(folder, f"r{i}", seed=i)
    return folder


@pytest.fixture(scope="module")
def beat_weights(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny weights with a beat head of no trees (every beat N), for its backbone."""
    out = tmp_path_factory.mktemp("beatw") / "w"
    shutil.copytree(tiny_weights, out)
    d = json.loads((out / "backbone.json").read_text())["config"]["d_model"]
    save_beat_head(BeatHead(BeatHeadConfig(d_model=d)), out,
                   read_backbone_meta(out)["backbone_hash"])
    return out


def _run(*args: object) -> tuple[int, str]:
    from ecgmoe_cli.cli import app

    res = CliRunner().invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


def test_predict_beats_writes_one_row_per_beat_and_the_holter_columns(
        records: Path, beat_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    code, text = _run("predict", records, "-o", out, "--weights", beat_weights, "--beats",
                      "--workers", "1", "--quiet")
    assert code == 0, text
    rows = pq.read_table(out).to_pylist()
    beats = pq.read_table(tmp_path / "out.beats.parquet")
    assert beats.schema.names == ["path", "record", "time_s", "sample", "rr_pre_ms",
                                  "rr_post_ms", "beat_class", "beat_prob", "source_stamp"]
    b = beats.to_pandas()
    assert len(b) == sum(r["n_classified"] for r in rows) > 0
    for r in rows:
        mine = b[b.record == r["record"]]
        assert r["pvc_count"] == (mine.beat_class == "V").sum()
        assert r["pac_count"] == (mine.beat_class == "S").sum()
        assert r["pvc_burden"] == pytest.approx(r["pvc_count"] / r["n_classified"])
        assert 0.0 <= r["af_burden"] <= 1.0  # the tiny weights have the rhythm task
        assert np.all(np.diff(mine.time_s) > 0)
        np.testing.assert_allclose(mine.rr_pre_ms.to_numpy()[1:],
                                   np.diff(mine.time_s) * 1000, rtol=1e-5)
        assert np.isnan(mine.rr_pre_ms.iloc[0]) and np.isnan(mine.rr_post_ms.iloc[-1])
        assert np.all(np.abs(mine["sample"] - mine.time_s * FS) <= 0.5)  # the file's rate
        assert set(mine.beat_class) <= set("NSVFQ") and mine.beat_prob.between(0, 1).all()
    assert not list(tmp_path.glob("*.partial"))  # written atomically, parts merged


def test_holter_columns_without_beats_and_no_beats_file(records: Path, beat_weights: Path,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "res"
    code, text = _run("predict", records, "-o", out, "--weights", beat_weights, "--quiet")
    assert code == 0, text
    rows = pq.read_table(out).to_pylist()
    assert all(r["pvc_count"] is not None and r["n_classified"] > 0 for r in rows)
    assert not (tmp_path / "res.beats").exists()


def test_a_head_of_another_backbone_is_refused_or_skipped(records: Path, beat_weights: Path,
                                                          tmp_path: Path) -> None:
    w = tmp_path / "w"
    shutil.copytree(beat_weights, w)
    sidecar = w / "heads" / "beat_class.json"
    meta = json.loads(sidecar.read_text())
    meta["backbone_hash"] = "f" * 64
    sidecar.write_text(json.dumps(meta))
    code, text = _run("predict", records, "-o", tmp_path / "a.parquet", "--weights", w,
                      "--beats", "--workers", "1", "--quiet")
    assert code == 1 and "trained on backbone ffffffffffff" in text
    assert len(text.strip().splitlines()) == 1
    code, text = _run("predict", records, "-o", tmp_path / "b.parquet", "--weights", w,
                      "--workers", "1", "--quiet")
    assert code == 0 and "beat head skipped" in text
    rows = pq.read_table(tmp_path / "b.parquet").to_pylist()
    assert all(r["pvc_count"] is None for r in rows) and rows[0]["af_burden"] is not None


def test_weights_without_a_head_refuse_beats(records: Path, tiny_weights: Path,
                                             tmp_path: Path) -> None:
    code, text = _run("predict", records, "-o", tmp_path / "a.parquet", "--weights",
                      tiny_weights, "--beats", "--quiet")
    assert code == 1 and "no beat head" in text and "finetune --task beat_class" in text


def test_overlapping_windows_classify_each_beat_once() -> None:
    class Prep:
        rpeaks = np.array([[50, 150, 350], [50, 250, -1]])  # window 1 starts at sample 100
        window_start_s = np.array([0.0, 1.0])
        n_valid = np.array([400, 400])

    probs = np.zeros((2, 3, 5), np.float32)
    probs[0, :, 0] = 1.0  # window 0 says N
    probs[1, :, 2] = 1.0  # window 1 says V
    ctx = RowContext((), {}, 100.0, "w", "s")
    out = WindowOutputs({}, beat_probs=probs)
    beats = record_beats(Prep(), out, ctx, af_spans(Prep(), out, ctx))  # type: ignore
    assert beats is not None
    assert beats.sample.tolist() == [50, 150, 350]
    # sample 150 is in both: window 0 has it 50 off centre, window 1 150 off; 350 only in 1
    assert beats.classes.tolist() == [0, 0, 2]


def test_no_beat_is_called_s_in_an_af_episode_and_its_s_is_n_there() -> None:
    """In AF an S beat is an N beat (AAMI): S's probability goes to N, not to V, even for a beat
    the head's supraventricular rule left with no N probability of its own."""

    class Prep:
        rpeaks = np.array([[50, 150], [50, 150]])
        window_start_s = np.array([0.0, 2.0])
        n_valid = np.array([200, 200])

    rhythm = TASKS["rhythm"]
    probs = np.tile(np.array([0.0, 0.7, 0.3, 0.0, 0.0], np.float32), (2, 2, 1))  # S, then V
    afib = np.zeros((2, len(rhythm.labels)), np.float32)
    afib[1, rhythm.labels.index("afib")] = 0.9  # window 1 is AF
    ctx = RowContext((rhythm,), {"rhythm": (0.5,) * len(rhythm.labels)}, 100.0, "w", "s")
    out = WindowOutputs({"rhythm": afib}, beat_probs=probs)
    beats = record_beats(Prep(), out, ctx, af_spans(Prep(), out, ctx))  # type: ignore
    assert beats is not None
    assert beats.classes.tolist() == [1, 1, 0, 0]
    np.testing.assert_allclose(beats.probs[2:].sum(1), 1.0, rtol=1e-6)
    assert beats.probs[2, 0] == pytest.approx(0.7) and beats.probs[2, 1] == 0


def test_af_episodes_grow_a_called_window_through_its_likely_neighbours() -> None:
    p = np.array([0.1, 0.3, 0.6, 0.3, 0.1, 0.3, 0.3, 0.0, 0.5])
    assert af_episodes(p, 0.5).tolist() == [False, True, True, True, False, False, False,
                                            False, True]  # 0.3 alone (no 0.5 in its run): not
    assert not af_episodes(np.full(4, 0.49), 0.5).any()
    assert af_episodes(np.zeros(0), 0.5).size == 0
    assert af_episodes(np.ones(1), 0.5).tolist() == [True]


def test_af_episodes_join_across_one_window_but_not_two() -> None:
    p = np.array([0.6, 0.0, 0.6, 0.1, 0.0, 0.7, 0.0])
    assert af_episodes(p, 0.5).tolist() == [True, True, True, False, False, True, False]


def test_finetune_beat_class_writes_a_head_predict_uses(records: Path, tiny_weights: Path,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "trained"
    code, text = _run("finetune", "--task", "beat_class", "--data", records, "--backbone",
                      tiny_weights, "-o", out, "--folds", "3", "--json")
    assert code == 0, text
    meta = json.loads((out / "heads" / "beat_class.json").read_text())
    assert meta["backbone_hash"] == read_backbone_meta(tiny_weights)["backbone_hash"]
    cv = meta["metrics"]["leave_records_out"]
    assert cv["folds"] == 3 and cv["per_class"]["V"]["n"] > 0
    # every 4th beat a wide, inverted PVC: found in records the head did not train on
    assert cv["per_class"]["V"]["se"] > 0.9 and cv["per_class"]["V"]["ppv"] > 0.9
    assert not list(out.rglob("*.pt")) and not list(out.rglob("*.pkl"))
    shutil.copytree(tiny_weights / "adapters", out / "adapters")
    code, text = _run("predict", records, "-o", tmp_path / "p.parquet", "--weights", out,
                      "--beats", "--workers", "1", "--quiet")
    assert code == 0, text
    assert pq.read_table(tmp_path / "p.beats.parquet").num_rows > 0


def test_holter_columns_are_in_record_rows_only() -> None:
    from ecgmoe_cli.pipeline.predict.schema import HOLTER_FIELDS, report_schema
    from ecgmoe_cli.tasks import TASKS

    holter = {name for name, _ in HOLTER_FIELDS}
    assert holter == {"n_classified", "pvc_count", "pac_count", "pvc_burden", "af_burden"}
    assert holter <= set(report_schema(TASKS.values()).names)
    assert not holter & set(report_schema(TASKS.values(), window=True).names)


def test_predict_folder_imports_no_torch() -> None:
    """The reader processes fork before the model loads: the beat rows must not bring torch."""
    import subprocess
    import sys

    code = "import sys, ecgmoe_cli.pipeline.predict.run; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_encode_records_reports_each_record(records: Path, tiny_weights: Path) -> None:
    """The beat head's encoding pass advances its progress bar once per record."""
    from ecgmoe_cli.io.records.discover import records_under
    from ecgmoe_cli.training.beat_class import encode_records
    from ecgmoe_cli.weights.store import load_model

    model, spec, _ = load_model(tiny_weights, tasks=[])
    calls: list[int] = []
    data = encode_records(records_under(records), model, spec, progress=lambda: calls.append(1))
    assert len(calls) == len(data.annotated) == 3
    assert data.in_af.shape == data.label.shape and not data.in_af.any()  # no rhythm notes


def _beats(*stretches: tuple[float, list[float]]) -> np.ndarray:
    """Beat times: each stretch repeats its RR pattern (s) until its end time."""
    t = [0.3]
    for until, pattern in stretches:
        k = 0
        while t[-1] + pattern[k % len(pattern)] <= until:
            t.append(t[-1] + pattern[k % len(pattern)])
            k += 1
    return np.array(t)


def test_af_burden_carries_an_episode_to_the_beat_into_its_neighbours() -> None:
    """Windows of 10 s; only window 2 is called AF, but the irregular beats run from 16 s to
    34 s: the episode spans them, its S beats are N, and af_burden counts them; window 0's
    own irregular burst, cut off from the episode by regular beats, does not count."""
    from ecgmoe_cli.pipeline.predict.beats import af_burden, episode_edges

    irregular, sinus = [0.45, 0.7, 0.5, 0.9, 0.4, 0.65], [0.8]
    t = _beats((2.0, sinus), (6.0, irregular), (16.0, sinus), (34.0, irregular), (50.0, sinus))
    start = np.arange(0.0, 50.0, 10.0)
    called = np.array([False, False, True, False, False])
    (lo, hi), = episode_edges(t, start, start + 10.0, called)
    assert 14.4 < lo < 16.5 and 33.5 < hi < 35.6  # each edge within two beats (0.8 s each)
    assert episode_edges(_beats((50.0, sinus)), start, start + 10.0, called).tolist() == [
        [20.0, 30.0]]  # regular neighbours: the window's own edges
    assert episode_edges(t, start, start + 10.0, np.zeros(5, bool)).shape == (0, 2)

    class Prep:  # the same through af_spans and af_burden, at 100 Hz
        rpeaks = np.full((5, 40), -1)
        window_start_s = start
        n_valid = np.full(5, 1000)

    for w in range(5):
        inside = t[(t >= start[w]) & (t < start[w] + 10)]
        Prep.rpeaks[w, :inside.size] = np.round((inside - start[w]) * 100)
    rhythm = TASKS["rhythm"]
    p = np.zeros((5, len(rhythm.labels)), np.float32)
    p[2, rhythm.labels.index("afib")] = 0.9
    ctx = RowContext((rhythm,), {"rhythm": (0.5,) * len(rhythm.labels)}, 100.0, "w", "s")
    s_beats = np.tile(np.array([0.2, 0.8, 0.0, 0.0, 0.0], np.float32), (5, 40, 1))
    out = WindowOutputs({"rhythm": p}, beat_probs=s_beats)
    spans = af_spans(Prep(), out, ctx)  # type: ignore[arg-type]
    assert spans is not None and spans.shape == (1, 2)
    assert af_burden(Prep(), ctx, spans) == pytest.approx(  # type: ignore[arg-type]
        (spans[0, 1] - spans[0, 0]) / 50.0)
    beats = record_beats(Prep(), out, ctx, spans)  # type: ignore[arg-type]
    assert beats is not None
    at = beats.sample / 100.0
    called_s = beats.classes == 1
    assert not called_s[(at >= spans[0, 0]) & (at < spans[0, 1])].any()
    assert called_s[(at < spans[0, 0]) | (at >= spans[0, 1])].all()
    p[2] = 0.0  # no episode: no AF time
    no_af = af_spans(Prep(), WindowOutputs({"rhythm": p}), ctx)  # type: ignore[arg-type]
    assert af_burden(Prep(), ctx, no_af) == 0.0  # type: ignore[arg-type]
    assert af_burden(Prep(), ctx, None) is None  # type: ignore[arg-type]
