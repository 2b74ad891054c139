"""Output a user can trust (issue 24): the cases the first pass left open, each through the
CLI or the function the CLI calls (items 4, 6, 7, 10, 12; R5, R8-R12, R18; R15 is in
tests/weights/test_weights_untrusted.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from broken_inputs import FS_ARGS, _wfdb, csv_record, ecg_like
from run_cli import invoke, one_line_error

from ecgmoe_cli.signal.leads import CANONICAL_LEADS

LEADS = list(CANONICAL_LEADS)


def _twelve_lead(folder: Path, name: str = "rec", seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return _wfdb(folder, name, ecg_like(250, 10, n_leads=12, seed=seed), 250, LEADS)[0]


def _rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


# --- item 4: zeroed leads are not listed as used, and are warned about ---------------------

def test_zeroed_leads_are_not_listed_as_used_and_are_warned(tmp_path: Path,
                                                             tiny_weights: Path) -> None:
    sig = ecg_like(250, 10, n_leads=12)
    sig[6:] = 0.0  # V1-V6 unplugged
    (tmp_path / "in").mkdir()
    _wfdb(tmp_path / "in", "v_off", sig, 250, LEADS)
    code, _, err = invoke("predict", tmp_path / "in", "-o", tmp_path / "r.parquet",
                          "--weights", tiny_weights, "--workers", 1, "-q")
    assert code == 0, err
    (row,) = _rows(tmp_path / "r.parquet")
    assert row["leads_used"] == "I,II,III,aVR,aVL,aVF"
    assert "V1, V2, V3, V4, V5, V6 flat, saturated or missing throughout" in row["lead_warnings"]


# --- item 10: predict --leads keeps only those leads, for every reader --------------------

def test_predict_leads_is_honoured_on_wfdb_records(tmp_path: Path, tiny_weights: Path) -> None:
    _twelve_lead(tmp_path / "in")
    out = tmp_path / "r.parquet"
    code, _, err = invoke("predict", tmp_path / "in", "-o", out, "--weights", tiny_weights,
                          "--workers", 1, "-q", "--leads", "I,II")
    assert code == 0, err
    (row,) = _rows(out)
    assert row["status"] == "ok" and row["leads_used"] == "I,II"
    code, _, err = invoke("predict", tmp_path / "in", "-o", out, "--weights", tiny_weights,
                          "--workers", 1, "-q", "--leads", "V9", "--overwrite")
    (row,) = _rows(out)
    assert row["status"] == "error" and "none of the leads --leads keeps (V9)" in row["error"]


# --- R11: two runs on one -o: the second is refused by a lock -----------------------------

def test_a_second_run_on_the_same_output_is_refused_by_the_lock(tmp_path: Path,
                                                               tiny_weights: Path) -> None:
    from ecgmoe_cli.io.outputs import OutputLock

    _twelve_lead(tmp_path / "in")
    out = tmp_path / "r.parquet"
    held = OutputLock(out)
    held.acquire()  # as a first run does for its whole length
    try:
        code, _, err = invoke("predict", tmp_path / "in", "-o", out, "--weights", tiny_weights,
                              "--workers", 1, "-q")
        one_line_error(code, err, "another run is writing this report now")
        assert not out.exists() and not (tmp_path / "r.parquet.partial").exists()
    finally:
        held.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]  # the lock file went too
    code, _, err = invoke("predict", tmp_path / "in", "-o", out, "--weights", tiny_weights,
                          "--workers", 1, "-q")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "r.parquet"]


def test_two_predicts_at_once_one_runs_and_the_other_is_refused(tmp_path: Path,
                                                               tiny_weights: Path) -> None:
    import subprocess
    import sys

    for k in range(3):
        _twelve_lead(tmp_path / "in", f"rec{k}", seed=k)
    out = tmp_path / "r.parquet"
    cmd = [sys.executable, "-m", "ecgmoe_cli", "predict", str(tmp_path / "in"), "-o",
           str(out), "--weights", str(tiny_weights), "--workers", "1", "-q"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(c for c, _ in results)
    # both may succeed one after the other only if the first finished before the second began
    # (then the second must have refused the existing report); never both writing at once
    assert codes[0] == 0, results
    if codes[1] != 0:
        err = next(e for c, e in results if c != 0)
        assert ("another run is writing" in err or "report exists" in err), err
    assert sorted(r["record"] for r in _rows(out)) == ["rec0", "rec1", "rec2"]


# --- R12: --resume notices records that changed or vanished -------------------------------

def test_resume_redoes_changed_records_and_drops_vanished_ones(tmp_path: Path,
                                                               tiny_weights: Path) -> None:
    import os

    for k in range(3):
        _twelve_lead(tmp_path / "in", f"rec{k}", seed=k)
    out = tmp_path / "r.parquet"
    base = ["predict", tmp_path / "in", "-o", out, "--weights", tiny_weights, "--workers", 1,
            "-q"]
    assert invoke(*base)[0] == 0
    before = {r["record"]: r for r in _rows(out)}
    for suffix in (".hea", ".dat"):
        (tmp_path / "in" / f"rec0{suffix}").unlink()
    dat = tmp_path / "in" / "rec1.dat"
    _wfdb(tmp_path / "in", "rec1", ecg_like(250, 10, n_leads=12, bpm=140, seed=7), 250, LEADS)
    os.utime(dat, ns=(1, 1))  # another time even on a coarse clock
    code, _, err = invoke(*base, "--resume")
    assert code == 0, err
    assert "1 record(s) changed since the first run" in err and "rec1.hea" in err
    assert "1 record(s) no longer under INPUT: their rows dropped" in err and "rec0.hea" in err
    after = {r["record"]: r for r in _rows(out)}
    assert sorted(after) == ["rec1", "rec2"]  # one row each: the stale one went
    assert after["rec2"]["heart_rate_bpm"] == before["rec2"]["heart_rate_bpm"]
    assert after["rec1"]["heart_rate_bpm"] > 120 > before["rec1"]["heart_rate_bpm"]
    # a dataset output: the parts holding stale rows are rewritten without them
    ds = tmp_path / "res"
    base[3] = ds
    assert invoke(*base)[0] == 0
    (tmp_path / "in" / "rec2.hea").unlink()
    code, _, err = invoke(*base, "--resume")
    assert code == 0 and "no longer under INPUT" in err, err
    assert sorted(r["record"] for r in pq.read_table(ds).to_pylist()) == ["rec1"]


# --- item 6: plot --report flags findings only; a trait reads as a value -------------------

def test_a_female_or_normal_ecg_is_not_a_finding_and_sex_reads_as_a_word() -> None:
    from ecgmoe_cli.plotting.predictions import is_flagged, prediction_lines

    woman = {"status": "ok", "sex_pred": "female", "sex_female_prob": 0.9,
             "superclass_pred": "norm", "superclass_norm_prob": 0.8, "rhythm_pred": ""}
    assert not is_flagged(woman)
    assert is_flagged({**woman, "rhythm_pred": "afib", "rhythm_afib_prob": 0.7})
    assert is_flagged({**woman, "superclass_pred": "norm,mi"})
    lines = prediction_lines({**woman, "sex_pred": "", "sex_female_prob": 0.1})
    assert "sex: male (p female 0.10)" in lines
    assert "sex: female (p female 0.90)" in prediction_lines(woman)
    assert not any("no findings" in line and "sex" in line for line in lines)


def test_plot_report_draws_no_record_for_sex_alone(real_dir: Path, tmp_path: Path) -> None:
    import pandas as pd

    cinc = real_dir / "cinc2021"
    report = tmp_path / "r.parquet"
    pd.DataFrame([
        {"path": str(cinc / "E07505.hea"), "record": "E07505", "status": "ok",
         "sex_pred": "female", "sex_female_prob": 0.9, "rhythm_pred": "brady"},
        {"path": str(cinc / "E07506.hea"), "record": "E07506", "status": "ok",
         "sex_pred": "female", "sex_female_prob": 0.9, "rhythm_pred": ""},
    ]).to_parquet(report)
    code, out, err = invoke("plot", "--report", report, "-o", tmp_path / "figs")
    assert code == 0, out + err
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["E07505.png"]


# --- R10: plot --report with crafted `record` values stays inside -o -----------------------

def test_crafted_record_names_stay_inside_the_output_folder(real_dir: Path,
                                                            tmp_path: Path) -> None:
    import pandas as pd

    rec = str(real_dir / "cinc2021" / "E07505.hea")
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    report = work / "r.parquet"
    found = {"status": "ok", "rhythm_pred": "brady"}
    pd.DataFrame([
        {**found, "path": rec, "record": "../../escaped"},
        {**found, "path": rec, "record": str(tmp_path / "absolute")},
        {**found, "path": rec + "\0.png", "record": "nul"},
        {**found, "path": rec, "record": "..\\..\\win"},
        {**found, "path": rec, "record": "good"},
    ]).to_parquet(report)
    figs = work / "figs"
    code, out, err = invoke("plot", "--report", report, "-o", figs)
    assert code == 1  # the NUL row could not be drawn: said, and the run's exit says so
    assert "Traceback" not in out + err and (out + err).count("bad record path") == 1
    assert sorted(p.name for p in figs.iterdir()) == ["absolute.png", "escaped.png",
                                                      "good.png", "win.png"]
    assert not list(tmp_path.glob("*.png")) and not list((tmp_path / "a").glob("*.png"))


# --- R18: labels.csv with rows that disagree for one record -------------------------------

def test_conflicting_label_rows_for_one_record_are_refused_by_name(tmp_path: Path) -> None:
    from ecgmoe_cli.io.labels.detect import open_label_source

    root = tmp_path / "in"
    root.mkdir()
    csv_record(root / "good0.csv")
    csv_record(root / "good1.csv", 90)
    (root / "labels.csv").write_text("record,age,sex\ngood0,40,F\ngood1,50,M\ngood1,50,M\n")
    assert open_label_source(root, "csv").tasks  # a repeated identical row is harmless
    (root / "labels.csv").write_text("record,age\ngood0,40\ngood1,50\ngood0.csv,80\n")
    code, _, err = invoke("preprocess", root, "-o", tmp_path / "ds", *FS_ARGS, "-q")
    one_line_error(code, err, "record 'good0.csv' has rows that disagree (lines 2 and 4: "
                               "age '40' vs '80')", "labels.csv")
    assert not (tmp_path / "ds").exists()


# --- R9: a CinC header pointing at a forged .mat -------------------------------------------

def _cinc_pair(folder: Path, name: str, mat: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"{name} 2 500 5000"] + [f"{name}.mat 16x1+24 1000.0(0)/mV 16 0 0 0 0 {lead}"
                                      for lead in ("I", "II")]
    (folder / f"{name}.hea").write_text("\n".join(lines) + "\n")
    (folder / f"{name}.mat").write_bytes(mat)
    return folder / f"{name}.hea"


def _mat_v4(signal: np.ndarray) -> bytes:
    head = np.array([30, signal.shape[0], signal.shape[1], 0, 4], "<i4").tobytes() + b"val\0"
    return head + np.round(signal * 1000).astype("<i2").T.tobytes()


def test_a_forged_mat_signal_file_is_an_error_row_not_predictions(tmp_path: Path,
                                                                  tiny_weights: Path) -> None:
    rng = np.random.default_rng(0)
    garbage = rng.integers(0, 256, 20_024, dtype=np.uint8).tobytes()
    root = tmp_path / "in"
    _cinc_pair(root, "good", _mat_v4(ecg_like(500, 10)))
    _cinc_pair(root, "hdf5", b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: x HDF5 "
               b"schema 1.00 .".ljust(512, b" ") + b"\x89HDF\r\n\x1a\n" + garbage)
    _cinc_pair(root, "struct", b"MATLAB 5.0 MAT-file, Platform: PCWIN64".ljust(128, b" ")
               + garbage)
    _cinc_pair(root, "v4_other", np.array([30, 3, 7, 0, 2], "<i4").tobytes() + b"x\0" + garbage)
    code, _, err = invoke("predict", root, "-o", tmp_path / "r.parquet", "--weights",
                          tiny_weights, "--workers", 1, "-q")
    assert code == 0, err
    rows = {r["record"]: r for r in _rows(tmp_path / "r.parquet")}
    assert rows["good"]["status"] == "ok"
    assert "is a MATLAB v7.3 (HDF5) file" in rows["hdf5"]["error"]
    assert "is a MATLAB v5 file" in rows["struct"]["error"]
    assert "not the MATLAB v4 matrix its header describes (type 30, 3 x 7" in \
        rows["v4_other"]["error"]
    assert all(rows[k]["status"] == "error" for k in ("hdf5", "struct", "v4_other"))


# --- R5: a huge one-line CSV: bounded memory, a clear error --------------------------------

def test_a_huge_one_line_csv_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    import tracemalloc

    from ecgmoe_cli.errors import EcgMoeError
    from ecgmoe_cli.io.records.read import read_record

    huge = tmp_path / "one_line.csv"
    with open(huge, "wb") as f:  # 64 MB of "0.1," and no newline (the was 400 MB)
        for _ in range(64):
            f.write(b"0.1," * (1 << 18))
    tracemalloc.start()
    with pytest.raises(EcgMoeError, match="CSV has a line longer than 65536 bytes"):
        read_record(huge, fs=250, lead_names=["I"])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 << 20, peak  # blocks of 1 MiB, not the file
    ok = tmp_path / "ok.csv"  # a normal CSV, also with a long last line without newline
    ok.write_text("I,II\n" + "0.1,0.2\n" * 3000 + "0.1,0.2")
    assert read_record(ok, fs=250).signal.shape == (2, 3001)


# --- R8: a record deeper than the system's path limit: a row, never silence ----------------

def test_a_record_past_the_path_limit_gets_a_row(tmp_path: Path, tiny_weights: Path) -> None:
    import os

    root = tmp_path / "in"
    root.mkdir()
    csv_record(root / "good.csv")
    fd = os.open(root, os.O_RDONLY)
    try:
        for k in range(25):  # 25 folders of 200 characters: a path of over 5,000
            name = f"{k:02d}" + "d" * 198
            os.mkdir(name, dir_fd=fd)
            fd, old = os.open(name, os.O_RDONLY, dir_fd=fd), fd
            os.close(old)
        out = os.open("deep.csv", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(out, csv_record(tmp_path / "src.csv").read_bytes())
        os.close(out)
    finally:
        os.close(fd)
    code, _, err = invoke("predict", root, "-o", tmp_path / "r.parquet", "--weights",
                          tiny_weights, "--workers", 1, "-q", *FS_ARGS)
    assert code == 0, err
    deep, good = _rows(tmp_path / "r.parquet")  # sorted by path
    assert good["status"] == "ok" and deep["status"] == "error"
    assert "characters is too long for the system to open" in deep["error"]
    assert len(deep["error"]) < 600 and len(deep["path"]) > 4096


# --- item 7: info and bench count the same model alike; bench's memory is per model --------

@pytest.mark.slow
def test_info_and_bench_agree_and_peak_memory_is_per_model_and_batch() -> None:
    import json

    code, out, err = invoke("info", "--config", "tiny", "--json")
    assert code == 0, err
    info = json.loads(out)
    code, out, err = invoke("bench", "--config", "tiny", "--batch-size", "1,16", "--repeats", "2",
                            "--warmup", "1", "--models", "ecgmoe,dense_multitask", "--json", "-q")
    assert code == 0, err
    rows = json.loads(out)["results"]
    (one,) = [r for r in rows if (r["model"], r["batch_size"]) == ("ecgmoe", 16)]
    assert one["parameters_total"] == info["parameters"]["total"]
    assert one["flops_per_record"] == info["flops_per_record"]
    assert {r["memory_kind"] for r in rows} == {"cpu_tensors"}
    peaks = {(r["model"], r["batch_size"]): r["peak_memory_mb"] for r in rows}
    for model in ("ecgmoe", "dense_multitask"):  # the call's activations, not the process's
        assert 0 < peaks[model, 1] < peaks[model, 16] < 100, peaks  # RSS read ~350 MB for all


# --- item 12: the smaller points ------------------------------------------------------------

def test_plot_refuses_a_folder_and_an_extension_it_cannot_write(real_dir: Path,
                                                               tmp_path: Path) -> None:
    rec = real_dir / "cinc2021" / "E07500.hea"
    code, out, err = invoke("plot", real_dir / "cinc2021", "-o", tmp_path / "a.png")
    assert code == 1 and "is a folder: give one record" in out + err
    assert "unknown record type" not in out + err and "Traceback" not in out + err
    code, out, err = invoke("plot", rec, "-o", tmp_path / "x.jpg")
    assert code == 1 and ".jpg is not a format plot writes (png, pdf, svg)" in out + err
    assert not (tmp_path / "x.jpg").exists()


def test_predict_finds_a_wfdb_record_named_without_hea(tmp_path: Path,
                                                       tiny_weights: Path) -> None:
    hea = _twelve_lead(tmp_path / "in")
    code, _, err = invoke("predict", hea.with_suffix(""), "-o", tmp_path / "r.parquet",
                          "--weights", tiny_weights, "--workers", 1, "-q")
    assert code == 0, err
    assert [r["status"] for r in _rows(tmp_path / "r.parquet")] == ["ok"]


def test_resume_summary_counts_the_whole_report(tmp_path: Path, tiny_weights: Path) -> None:
    import json

    for k in range(2):
        _twelve_lead(tmp_path / "in", f"rec{k}", seed=k)
    base = ["predict", tmp_path / "in", "-o", tmp_path / "r.parquet", "--weights",
            tiny_weights, "--workers", 1]
    assert invoke(*base, "-q")[0] == 0
    _twelve_lead(tmp_path / "in", "rec2", seed=2)
    code, out, err = invoke(*base, "--resume", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["records_processed"] == 1 and summary["records_resumed"] == 2
    assert summary["report_status"] == {"ok": 3}
    code, out, err = invoke(*base, "--resume")
    assert "the report now holds" in out and "ok 3" in out


def test_evaluate_on_a_dataset_without_targets_says_so(tmp_path: Path) -> None:
    import torch

    from ecgmoe_cli.model.config import EcgMoeConfig
    from ecgmoe_cli.model.ecgmoe import EcgMoe
    from ecgmoe_cli.signal.spec import PreprocessSpec
    from ecgmoe_cli.tasks import TASKS
    from ecgmoe_cli.weights.store import save_model

    torch.manual_seed(0)
    spec = PreprocessSpec()  # the spec preprocess uses by default
    save_model(EcgMoe(EcgMoeConfig.from_spec("tiny", spec), [TASKS["sex"]]), spec,
               tmp_path / "w")
    tiny_weights = tmp_path / "w"

    (tmp_path / "in").mkdir()
    for k in range(2):
        csv_record(tmp_path / "in" / f"r{k}.csv", 60 + 10 * k)
    assert invoke("preprocess", tmp_path / "in", "-o", tmp_path / "ds", *FS_ARGS, "-q")[0] == 0
    code, _, err = invoke("evaluate", tmp_path / "ds", "--weights", tiny_weights, "--fold", "all")
    one_line_error(code, err, "dataset has targets for none of the weights' tasks")


def test_one_flag_one_meaning_across_commands() -> None:
    """--quiet/-q on every command that prints progress or tables, --strict with its
    --no-strict, and DATASET positional in train, evaluate and finetune alike."""
    import re

    for cmd in ("predict", "preprocess", "simulate", "evaluate", "train", "finetune"):
        text = re.sub(r"\x1b\[[0-9;]*m", "", invoke(cmd, "--help")[1])
        assert "--quiet" in text and "-q" in text, cmd
    for cmd in ("predict", "preprocess"):
        text = re.sub(r"\x1b\[[0-9;]*m", "", invoke(cmd, "--help")[1])
        assert "--no-strict" in text, cmd
    for cmd in ("train", "evaluate", "finetune"):
        text = re.sub(r"\x1b\[[0-9;]*m", "", invoke(cmd, "--help")[1])
        assert re.search(r"Usage: ecgmoe \w+ \[OPTIONS\] [\[{]?dataset", text, re.I), (cmd, text)


# --- must show 2: the quality index flags noise and heavily corrupted real records ---------

def test_noise_and_corrupted_copies_of_real_records_are_all_flagged(real_dir: Path) -> None:
    """benchmarks/quality_check.py's corpus, in memory: 20 noise-only records and 20 heavily
    corrupted copies of the CinC 2021 records; every one under LOW_QUALITY (a record with no
    usable lead is an error: no prediction, so it counts as flagged)."""
    import importlib.util

    from ecgmoe_cli.errors import EcgMoeError
    from ecgmoe_cli.io.records.read import read_record
    from ecgmoe_cli.io.records.record import Record
    from ecgmoe_cli.pipeline.prepare import prepare_from_record
    from ecgmoe_cli.signal.quality import LOW_QUALITY
    from ecgmoe_cli.signal.spec import PreprocessSpec

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "quality_check.py"
    spec_ = importlib.util.spec_from_file_location("quality_check", path)
    qc = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(qc)  # type: ignore[union-attr]
    spec = PreprocessSpec()

    def quality(signal: np.ndarray, fs: float) -> float:
        rec = Record("mem.hea", "mem", signal.astype(np.float32), fs, LEADS)
        try:
            return prepare_from_record(rec, spec).quality
        except EcgMoeError:
            return 0.0

    rng = np.random.default_rng(0)
    noise = [quality(rng.normal(0, 0.02 * 100 ** (i / 19), (12, 5000)), 500.0)
             for i in range(20)]
    sources = sorted(real_dir.glob("cinc2021/*.hea"))[:20]
    assert len(sources) == 20
    kinds = ("noise", "motion", "clip", "all")
    corrupted = []
    for i, src in enumerate(sources):
        rec = read_record(src)
        assert quality(rec.signal, rec.fs) >= LOW_QUALITY  # the clean original passes
        corrupted.append(quality(qc.corrupt(rec.signal, rec.fs, kinds[i % 4], rng), rec.fs))
    assert max(noise) < LOW_QUALITY, noise
    assert max(corrupted) < LOW_QUALITY, corrupted
