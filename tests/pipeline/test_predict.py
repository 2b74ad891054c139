"""`ecgmoe predict` end to end on real records (symlinked in place) with tiny random weights."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from run_cli import default_sigint
from typer.testing import CliRunner

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.model.config import EcgMoeConfig
from ecgmoe_cli.model.ecgmoe import EcgMoe
from ecgmoe_cli.pipeline.predict.rows import aggregate
from ecgmoe_cli.pipeline.predict.schema import report_schema
from ecgmoe_cli.signal.leads import CANONICAL_LEADS
from ecgmoe_cli.signal.spec import PreprocessSpec
from ecgmoe_cli.tasks import TASKS
from ecgmoe_cli.weights.store import save_model

REPO = Path(__file__).resolve().parents[2]
SPEC = PreprocessSpec()
# sinus brady and sinus tachy 12-lead, 100 Hz PTB-XL, lower-case LUDB, a 112 s Holter (11 windows)
REAL = ["cinc2021/E07500", "cinc2021/E07501", "ptbxl/00001_lr", "ludb/1", "cpsc2021/data_101_6"]


def _cli():
    import typer

    from ecgmoe_cli.commands import predict
    from ecgmoe_cli.commands.common import cli_errors

    app = typer.Typer()
    app.command("predict")(cli_errors(predict.run))
    app.command("other")(lambda: None)  # two commands: typer keeps `predict` as a subcommand
    return app


def _predict(*args: object) -> tuple[int, str]:
    res = CliRunner().invoke(_cli(), ["predict", *map(str, args)])
    return res.exit_code, res.output


def _link_record(real_dir: Path, name: str, dest: Path) -> None:
    """Symlink every file of a real record into dest (the data stay in shared/)."""
    src = real_dir / name
    dest.mkdir(parents=True, exist_ok=True)
    for f in src.parent.glob(src.name + ".*"):
        (dest / f.name).symlink_to(f)


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny random weights with every built-in task, trained with the default spec; calibrated
    so that every rhythm label is called and no sex label is."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights")
    model = EcgMoe(EcgMoeConfig.from_spec("tiny", SPEC), list(TASKS.values()))
    model.heads["rhythm"].thresholds = [0.0] * 4  # type: ignore[union-attr]
    model.heads["sex"].thresholds = [1.0]  # type: ignore[union-attr]
    save_model(model, SPEC, path)
    return path


@pytest.fixture(scope="module")
def records(real_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("records")
    for name in REAL:
        _link_record(real_dir, name, root / name.split("/")[0])
    (root / "broken").mkdir()
    (root / "broken" / "bad.hea").write_text("bad 12 500 five-thousand\nnot a signal line\n")
    return root


@pytest.fixture(scope="module")
def report(records: Path, weights_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("out") / "r.parquet"
    code, output = _predict(records, "-o", out, "--weights", weights_dir, "--workers", 1,
                            "--json")
    assert code == 0, output
    summary = json.loads(output)
    assert summary["status"] == {"ok": len(REAL), "error": 1}
    return out


def _sorted(table) -> dict[str, list]:  # type: ignore[no-untyped-def]
    d = table.to_pydict()
    order = np.argsort(d["path"], kind="stable")
    return {k: [v[i] for i in order] for k, v in d.items()}


def _assert_same_rows(a: dict[str, list], b: dict[str, list]) -> None:
    assert a.keys() == b.keys() and a["path"] == b["path"]
    for col, va in a.items():
        if all(isinstance(v, float) or v is None for v in va + b[col]):
            np.testing.assert_allclose(np.array(va, float), np.array(b[col], float),
                                       rtol=1e-4, atol=1e-5, err_msg=col)
        else:
            assert va == b[col], col


def test_report_has_a_row_per_record_with_the_documented_schema(report: Path) -> None:
    table = pq.read_table(report)
    assert table.schema.names == report_schema(TASKS.values()).names
    rows = table.to_pylist()
    assert len(rows) == len(REAL) + 1
    bad = [r for r in rows if r["status"] == "error"]
    assert len(bad) == 1 and bad[0]["record"] == "bad" and "\n" not in bad[0]["error"]
    assert bad[0]["error"] and bad[0]["rhythm_prob"] is None
    ok = [r for r in rows if r["status"] == "ok"]
    for r in ok:
        assert r["error"] == "" and len(r["weights_id"]) == 21 and len(r["spec_hash"]) == 16
        assert 0 <= r["rhythm_afib_prob"] <= 1 and r["rhythm_prob"] == max(
            r[f"rhythm_{lab}_prob"] for lab in TASKS["rhythm"].labels)
        assert r["rhythm_pred"] == "afib,tachy,brady,irregular" and r["sex_pred"] == ""
        assert r["arrhythmia_class"] in TASKS["arrhythmia"].labels
        assert np.isfinite(r["age_years"]) and np.isfinite(r["rr_interval_ms"])
    by_name = {r["record"]: r for r in ok}
    assert by_name["data_101_6"]["n_windows"] == 11 and by_name["E07500"]["n_windows"] == 1
    assert by_name["E07500"]["leads_used"].split(",")[:3] == ["I", "II", "III"]
    assert by_name["E07500"]["heart_rate_bpm"] < 60  # sinus bradycardia
    assert by_name["E07501"]["heart_rate_bpm"] > 100  # sinus tachycardia


def test_strict_fails_on_an_error_row(records: Path, weights_dir: Path, tmp_path: Path) -> None:
    code, output = _predict(records, "-o", tmp_path / "r.parquet", "--weights", weights_dir,
                            "--workers", 0, "--strict", "--quiet")
    assert code == 1 and "1 record(s) failed" in output
    assert (tmp_path / "r.parquet").is_file()  # the report is still written


def test_shards_together_equal_the_unsharded_report(records: Path, weights_dir: Path,
                                                    report: Path, tmp_path: Path) -> None:
    for i in range(2):
        code, output = _predict(records, "-o", tmp_path / "ds", "--weights", weights_dir,
                                "--shard", f"{i}/2", "--workers", 1, "--quiet")
        assert code == 0, output
    sharded = pq.read_table(tmp_path / "ds")
    assert 0 < pq.read_table(next((tmp_path / "ds").glob("part-00000-*"))).num_rows < 6
    _assert_same_rows(_sorted(sharded), _sorted(pq.read_table(report)))


def test_default_batch_size_follows_the_device() -> None:
    from ecgmoe_cli.pipeline.predict.options import (
        CPU_BATCH,
        GPU_BATCH,
        PredictOptions,
        batch_size_for,
    )

    assert batch_size_for(PredictOptions()) == CPU_BATCH
    assert batch_size_for(PredictOptions(device="cuda:1")) == GPU_BATCH > CPU_BATCH
    assert batch_size_for(PredictOptions(device="cuda", batch_size=8)) == 8


def test_gpu_inference_convolves_in_full_fp32() -> None:
    """TF32 convolutions made an H200's report depend on --batch-size (an expert choice flipped)."""
    from ecgmoe_cli.model.inference import Predictor

    model = EcgMoe(EcgMoeConfig.from_spec("tiny", SPEC), [TASKS["sex"]])
    before = torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = True
        Predictor(model, ["sex"], "cpu", 8)
        assert torch.backends.cudnn.allow_tf32  # the CPU path leaves the process setting alone
        Predictor(model, ["sex"], "cuda", 8)
        assert not torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32 = before


def test_shard_of_a_single_file_is_refused(records: Path, weights_dir: Path,
                                           tmp_path: Path) -> None:
    code, output = _predict(records, "-o", tmp_path / "r.parquet", "--weights", weights_dir,
                            "--shard", "1/2")
    assert code == 1 and "directory output" in output


def test_resume_adds_only_new_records(records: Path, weights_dir: Path, real_dir: Path,
                                      tmp_path: Path) -> None:
    folder = tmp_path / "recs"
    _link_record(real_dir, "cinc2021/E07502", folder)
    out = tmp_path / "r.parquet"
    assert _predict(folder, "-o", out, "--weights", weights_dir, "--workers", 0, "-q")[0] == 0
    _link_record(real_dir, "cinc2021/E07503", folder)
    code, output = _predict(folder, "-o", out, "--weights", weights_dir, "--workers", 0,
                            "--resume", "--json")
    assert code == 0 and json.loads(output)["records_processed"] == 1
    assert sorted(pq.read_table(out).column("record").to_pylist()) == ["E07502", "E07503"]
    code, output = _predict(folder, "-o", out, "--weights", weights_dir, "--resume", "--json")
    assert json.loads(output)["records_processed"] == 0
    assert pq.read_table(out).num_rows == 2
    _predict(folder, "-o", out, "--weights", weights_dir, "--workers", 0, "-q")  # fresh: replaces
    assert pq.read_table(out).num_rows == 2


def test_windows_and_explain(records: Path, weights_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.parquet"
    code, output = _predict(records, "-o", out, "--weights", weights_dir, "--workers", 1,
                            "--windows", "--explain", "--tasks", "rhythm,age", "-q")
    assert code == 0, output
    rows = pq.read_table(out).to_pylist()
    assert "sex_prob" not in rows[0] and "rhythm_pred" in rows[0]
    wins = pq.read_table(tmp_path / "r.windows.parquet").to_pylist()
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(wins) == sum(r["n_windows"] for r in ok)
    holter = [w for w in wins if w["record"] == "data_101_6"]
    assert [w["window"] for w in holter] == list(range(11))
    record = next(r for r in ok if r["record"] == "data_101_6")
    af = np.array([w["rhythm_afib_prob"] for w in holter])  # strongest 30 s (3 windows)
    sustained = np.convolve(af, np.ones(3) / 3, "valid").max()
    assert record["rhythm_afib_prob"] == pytest.approx(sustained)
    assert record["age_years"] == pytest.approx(np.median([w["age_years"] for w in holter]))
    for r in ok:
        exp = json.loads(r["explain"])
        assert exp["experts"] and all(len(v) >= 1 for v in exp["experts"].values())
        for label in filter(None, r["rhythm_pred"].split(",")):
            times = exp["beats"][f"rhythm_{label}"]
            assert times and all(0 <= t <= r["duration_s"] for t in times)


def test_aggregation_rules() -> None:
    p = np.array([[0.1, 0.9], [0.3, 0.2], [0.5, 0.4]], np.float32)
    np.testing.assert_allclose(aggregate(TASKS["conduction"], p), [0.5, 0.9])  # max
    np.testing.assert_allclose(aggregate(TASKS["conduction"], p, 2), [0.4, 0.55])  # best 2 in a row
    np.testing.assert_allclose(aggregate(TASKS["conduction"], p, 5), [0.3, 0.5])  # short: mean
    skewed = np.array([[0.1], [0.2], [0.9]], np.float32)  # mean 0.4, median 0.2: rules differ
    np.testing.assert_allclose(aggregate(TASKS["sex"], skewed), [0.4], rtol=1e-6)  # mean
    np.testing.assert_allclose(aggregate(TASKS["arrhythmia"], p), [0.3, 0.5])  # mean per class
    np.testing.assert_allclose(aggregate(TASKS["age"], skewed), [0.2])  # median
    np.testing.assert_allclose(aggregate(TASKS["rr_interval"], skewed), [0.2])  # median


def test_low_quality_windows_are_left_out_of_the_record_and_said() -> None:
    from types import SimpleNamespace

    from ecgmoe_cli.model.inference import WindowOutputs
    from ecgmoe_cli.pipeline.predict.rows import RowContext, record_row

    task = TASKS["conduction"]
    ctx = RowContext((task,), {task.name: (0.5,) * len(task.labels)}, 250.0, "w", "s")
    probs = np.full((3, len(task.labels)), 0.1, np.float32)
    probs[1] = 0.9  # the artefact window calls everything
    out = WindowOutputs({task.name: probs})

    def row(wq: list[float]) -> dict:
        prep = SimpleNamespace(path="r.hea", record="r", fs_in=500.0, duration_s=30.0,
                               leads_used=["I"], lead_warnings=[], n_valid=np.full(3, 2500),
                               rpeaks=np.full((3, 4), -1), window_start_s=np.arange(3) * 10.0,
                               heart_rate_bpm=60.0, n_beats=30, quality=float(np.mean(wq)),
                               window_quality=np.array(wq, np.float32))
        return record_row(prep, out, ctx)

    clean, one_bad, all_bad = row([0.9, 0.9, 0.9]), row([0.9, 0.2, 0.9]), row([0.2, 0.1, 0.3])
    assert clean["conduction_prob"] == pytest.approx(0.9) and clean["lead_warnings"] == ""
    assert one_bad["conduction_prob"] == pytest.approx(0.1) and not one_bad["low_quality"]
    assert "1 of 3 windows, left out" in one_bad["lead_warnings"]
    assert all_bad["low_quality"] and all_bad["conduction_prob"] == pytest.approx(0.9)
    assert "low signal quality 0.20" in all_bad["lead_warnings"]


def test_window_rows_count_every_beat_in_their_heart_rate() -> None:
    """A window's heart_rate_bpm is signal.beats.heart_rate_bpm of its beats (one rule for
    record, window and plot): bigeminy at 0.5 / 1.0 s reads 60 / its mean RR (82 bpm here),
    not 60 / the median (120)."""
    from types import SimpleNamespace

    from ecgmoe_cli.model.inference import WindowOutputs
    from ecgmoe_cli.pipeline.predict.rows import RowContext, window_rows

    task = TASKS["sex"]
    ctx = RowContext((task,), {task.name: (0.5,)}, 250.0, "w", "s")
    rpeaks = np.full((2, 24), -1)
    rpeaks[0, :14] = np.cumsum([10] + [125, 250] * 6 + [125])
    prep = SimpleNamespace(path="r.hea", record="r", fs_in=250.0, duration_s=20.0,
                           leads_used=["II"], lead_warnings=[], n_valid=np.full(2, 2500),
                           rpeaks=rpeaks, window_start_s=np.array([0.0, 10.0]),
                           window_quality=np.full(2, 0.9, np.float32))
    rows = window_rows(prep, WindowOutputs({task.name: np.full((2, 1), 0.5, np.float32)}), ctx)
    assert rows[0]["n_beats"] == 14
    assert rows[0]["heart_rate_bpm"] == pytest.approx(60 * 13 / (7 * 0.5 + 6 * 1.0))
    assert rows[1]["n_beats"] == 0 and np.isnan(rows[1]["heart_rate_bpm"])


def test_noise_is_reported_low_quality_and_an_ecg_is_not(real_dir: Path, weights_dir: Path,
                                                           tmp_path: Path) -> None:
    from ecgmoe_cli.simulate.tree import write_wfdb

    folder = tmp_path / "in"
    folder.mkdir()
    write_wfdb(folder / "noise", np.random.default_rng(0).normal(0, 0.3, (12, 5000)), 500.0, [])
    _link_record(real_dir, "cinc2021/E07500", folder)
    out = tmp_path / "r.parquet"
    code, output = _predict(folder, "-o", out, "--weights", weights_dir, "--workers", 1,
                            "--windows", "--tasks", "rhythm", "-q")
    assert code == 0, output
    for table in (out, tmp_path / "r.windows.parquet"):
        rows = {r["record"]: r for r in pq.read_table(table).to_pylist()}
        assert rows["noise"]["low_quality"] and rows["noise"]["quality"] < 0.5
        assert "low signal quality" in rows["noise"]["lead_warnings"]
        assert not rows["E07500"]["low_quality"] and rows["E07500"]["quality"] > 0.9
        assert rows["E07500"]["lead_warnings"] == ""


def test_missing_weights_and_cuda_are_one_line_errors(records: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    code, output = _predict(records, "-o", tmp_path / "r.parquet", "--weights", tmp_path)
    assert code == 1 and "backbone.json" in output and "Traceback" not in output
    if not torch.cuda.is_available():
        code, output = _predict(records, "-o", tmp_path / "r.parquet", "--device", "cuda")
        assert code == 1 and "CUDA" in output and len(output.strip().splitlines()) == 1
    import ecgmoe_cli.weights.meta as w

    monkeypatch.setattr(w.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(w, "__file__", str(tmp_path / "pkg" / "weights" / "meta.py"))
    with pytest.raises(EcgMoeError, match="no shipped weights"):
        w.default_weights_dir()
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "backbone.json").write_text("{}")
    assert w.default_weights_dir() == tmp_path / "weights"


def _many_records(root: Path, n: int) -> None:
    """n distinct 10 s 12-lead 500 Hz WFDB records (format 16): spikes at 75 bpm plus noise."""
    rng = np.random.default_rng(0)
    t = np.arange(5000) / 500
    beat = np.exp(-((t[:, None] - np.arange(0.2, 10, 0.8)) / 0.01) ** 2).sum(1)
    noise = rng.normal(0, 0.02, (5000, 12))
    root.mkdir(parents=True)
    for i in range(n):
        adu = (1000 * (beat[:, None] + np.roll(noise, 7 * i, axis=0))).astype("<i2")  # distinct
        adu.tofile(root / f"r{i:04d}.dat")
        lines = [f"r{i:04d} 12 500 5000"] + [f"r{i:04d}.dat 16 1000/mV 16 0 0 0 0 {name}"
                                            for name in CANONICAL_LEADS]
        (root / f"r{i:04d}.hea").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_killed_run_leaves_no_report_and_resume_completes(sig: int, weights_dir: Path,
                                                          tmp_path: Path) -> None:
    n = 150
    _many_records(tmp_path / "recs", n)
    out = tmp_path / "r.parquet"
    cmd = [sys.executable, "-m", "ecgmoe_cli", "predict", str(tmp_path / "recs"), "-o", str(out),
           "--weights", str(weights_dir), "--checkpoint-every", "8", "--workers", "2", "-q"]
    proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True, stderr=subprocess.PIPE,
                            preexec_fn=default_sigint)
    partial = tmp_path / "r.parquet.partial"
    deadline = time.monotonic() + 60
    while len(list(partial.glob("part-*.parquet"))) < 2:  # killed mid-way, with parts sealed
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()
        time.sleep(0.05)
    os.killpg(proc.pid, sig)  # as Ctrl-C does: the whole process group
    try:
        rc = proc.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):  # readers left by the kill, if any
            os.killpg(proc.pid, signal.SIGKILL)
    assert rc == (130 if sig == signal.SIGINT else -signal.SIGKILL)
    if sig == signal.SIGINT:  # one line, no traceback from the reader processes
        assert proc.stderr is not None and proc.stderr.read().decode().strip() == "interrupted"
    # no temporary file; kill -9 leaves the empty lock file (the kernel released its lock)
    left = {p.name for p in tmp_path.glob(".r.parquet*")}
    assert not out.exists() and left <= ({".r.parquet.lock"} if sig == signal.SIGKILL else set())
    done = sum(pq.read_metadata(p).num_rows for p in partial.glob("part-*.parquet"))
    assert 0 < done < n
    code, output = _predict(tmp_path / "recs", "-o", out, "--weights", weights_dir, "--resume",
                            "--workers", 1, "--json")
    assert code == 0, output
    assert json.loads(output)["records_processed"] == n - done
    paths = pq.read_table(out).column("path").to_pylist()
    assert len(paths) == len(set(paths)) == n
    assert not list(tmp_path.glob(".r.parquet*"))  # the resumed run took the lock and removed it


def test_long_record_streams_through_the_model_with_whole_record_figures(
        weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A record longer than one block goes through the model block by block, its file read
    once; its row holds every window and the whole record's heart rate and beats, as
    prepare_from_record gives."""
    from broken_inputs import holter_24h

    from ecgmoe_cli.io.records.read import read_record
    from ecgmoe_cli.pipeline.predict import schedule
    from ecgmoe_cli.pipeline.prepare import CHUNK_S, prepare_from_record

    case = holter_24h(tmp_path, hours=1.2 * CHUNK_S / 3600)  # two blocks
    out = tmp_path / "r.parquet"
    reads: list[object] = []
    monkeypatch.setattr(schedule, "read_record",
                        lambda *a, **k: reads.append(a[0]) or read_record(*a, **k))
    code, output = _predict(tmp_path, "-o", out, "--weights", weights_dir, "--workers", 1,
                            "--windows", "--quiet")
    assert code == 0, output
    assert len(reads) == 1
    row = pq.read_table(out).to_pylist()[0]
    whole = prepare_from_record(read_record(case.record), SPEC)
    assert row["status"] == "ok" and row["n_windows"] == len(whole.n_valid)
    assert row["n_beats"] == whole.n_beats and row["heart_rate_bpm"] == pytest.approx(
        whole.heart_rate_bpm)
    windows = pq.read_table(tmp_path / "r.windows.parquet").column("window").to_pylist()
    assert windows == list(range(len(whole.n_valid)))


def test_one_record_in_memory_is_its_report_row(records: Path, weights_dir: Path,
                                                tmp_path: Path) -> None:
    """`plot --weights` predicts its record in memory (predict_record): value for value, typed
    as the report's columns, the row `predict` writes for that record alone; a broken file
    gives its error row."""
    from ecgmoe_cli.pipeline.predict.options import PredictOptions
    from ecgmoe_cli.pipeline.predict.run import predict_record

    for i, path in enumerate([records / REAL[0].split("/")[0] / (Path(REAL[0]).name + ".hea"),
                              records / "broken" / "bad.hea"]):
        out = tmp_path / f"{i}.parquet"
        code, output = _predict(path, "-o", out, "--weights", weights_dir, "-q")
        assert code == (1 if i else 0), output  # one file that failed: the run failed
        want = pq.read_table(out).to_pylist()
        assert len(want) == 1 and want[0]["status"] == ("error" if i else "ok")
        assert predict_record(path, PredictOptions(weights=weights_dir)) == want[0]


def test_models_in_the_workers_give_the_same_report(records: Path, weights_dir: Path,
                                                    report: Path, tmp_path: Path) -> None:
    """With several workers on CPU each runs its own model on its own records (a chunk per
    forward pass); the rows must be those of the single-process run, long records and broken
    files included."""
    out = tmp_path / "w.parquet"
    code, output = _predict(records, "-o", out, "--weights", weights_dir, "--workers", 2,
                            "--batch-size", 2, "--windows", "--quiet")
    assert code == 0, output
    _assert_same_rows(_sorted(pq.read_table(out)), _sorted(pq.read_table(report)))
    windows = pq.read_table(tmp_path / "w.windows.parquet")
    assert windows.num_rows >= 5 + 10  # the 112 s record alone has 11 windows


def test_records_prepared_while_the_model_loads_give_the_same_report(
        records: Path, weights_dir: Path, report: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """While the model loads, one process prepares the first records into a buffer shared
    with the workers: a slow load lets it prepare all of them (broken file included), and the
    rows must be those of the single-process run."""
    from ecgmoe_cli.pipeline.predict import run

    start, with_samples, taken = run._start_model, run.with_samples, []

    def slow_start(*args, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(3)
        return start(*args, **kwargs)

    def counted(got, signals):  # type: ignore[no-untyped-def]
        taken.extend(path for path, _, _ in got)
        return with_samples(got, signals)

    monkeypatch.setattr(run, "_start_model", slow_start)
    monkeypatch.setattr(run, "with_samples", counted)
    out = tmp_path / "p.parquet"
    code, output = _predict(records, "-o", out, "--weights", weights_dir, "--workers", 2,
                            "--batch-size", 2, "--quiet")
    assert code == 0, output
    assert len(taken) == len(REAL) + 1
    _assert_same_rows(_sorted(pq.read_table(out)), _sorted(pq.read_table(report)))


def test_the_record_that_overflows_the_early_buffer_is_kept(real_dir: Path, monkeypatch) -> None:
    """The first records are prepared while the model loads, into a buffer of fixed size; the
    one that does not fit comes back with its own samples (not prepared a second time) and
    nothing after it is prepared early."""
    from ecgmoe_cli.pipeline.predict import schedule
    from ecgmoe_cli.pipeline.predict.options import PredictOptions
    from ecgmoe_cli.pipeline.prepare import prepare_record

    paths = [str(real_dir / name) + ".hea" for name in
             ("ptbxl/00001_lr", "cpsc2021/data_101_6", "ludb/1")]
    direct = [prepare_record(p, SPEC) for p in paths]
    assert [len(d.n_valid) for d in direct][:2] == [1, 11]
    monkeypatch.setattr(schedule, "_EARLY_BYTES", 4 * 5 * len(SPEC.leads) * SPEC.window_samples)
    early, signals = schedule.early_head(paths, SPEC, PredictOptions())
    assert early._results.poll(60)  # the worker sends once it has stopped by itself
    got = schedule.with_samples(early.take(), signals)
    assert list(got) == paths[:2]
    for path, want in zip(paths, direct):
        if path in got:
            np.testing.assert_array_equal(got[path].signal, want.signal)


def test_arrhythmia_class_agrees_with_rhythm_on_af_in_record_and_window_rows() -> None:
    """arrhythmia_class is an AF class exactly when rhythm_pred says afib: the most likely of
    the AF classes then, of the others otherwise, whatever the plain argmax."""
    from types import SimpleNamespace

    from ecgmoe_cli.model.inference import WindowOutputs
    from ecgmoe_cli.pipeline.predict.rows import RowContext, record_row, window_rows

    rhythm, arr = TASKS["rhythm"], TASKS["arrhythmia"]
    classes = arr.labels
    ctx = RowContext((rhythm, arr), {"rhythm": (0.5,) * 4, "arrhythmia": (0.5,) * len(classes)},
                     250.0, "w", "s")
    p_r = np.zeros((2, 4), np.float32)
    p_r[1, rhythm.labels.index("afib")] = 0.9  # window 1: rhythm calls afib
    p_a = np.full((2, len(classes)), 0.01, np.float32)
    p_a[0, classes.index("afib")], p_a[0, classes.index("pvc")] = 0.7, 0.3  # argmax afib
    p_a[1, classes.index("sinus")], p_a[1, classes.index("afib_rvr")] = 0.6, 0.2  # argmax sinus
    out = WindowOutputs({"rhythm": p_r, "arrhythmia": p_a})
    prep = SimpleNamespace(path="r.hea", record="r", fs_in=250.0, duration_s=20.0,
                           leads_used=["I"], lead_warnings=[], n_valid=np.full(2, 2500),
                           rpeaks=np.full((2, 4), -1), window_start_s=np.arange(2) * 10.0,
                           heart_rate_bpm=60.0, n_beats=20, quality=0.9,
                           window_quality=np.full(2, 0.9, np.float32))
    first, second = window_rows(prep, out, ctx)
    assert first["rhythm_pred"] == "" and first["arrhythmia_class"] == "pvc"
    assert first["arrhythmia_prob"] == pytest.approx(0.3)
    assert second["rhythm_pred"] == "afib" and second["arrhythmia_class"] == "afib_rvr"
    both = RowContext(ctx.tasks, ctx.thresholds, 250.0, "w", "s", sustained=2)
    row = record_row(prep, out, both)  # rhythm over both windows: afib 0.45 < 0.5
    assert row["rhythm_pred"] == "" and row["arrhythmia_class"] == "sinus"  # argmax: afib
    alone = RowContext((arr,), {"arrhythmia": (0.5,) * len(classes)}, 250.0, "w", "s")
    assert window_rows(prep, WindowOutputs({"arrhythmia": p_a}), alone)[0][
        "arrhythmia_class"] == "afib"  # no rhythm task: the plain argmax
