"""Reliability end to end: broken records among good ones, and bounded memory on a Holter.

Commands run as a user runs them (`python -m ecgmoe_cli ...` in a subprocess), so exit codes
and stderr are the real ones. The broken corpus comes from tests/broken_inputs.py; the
interruption tests are in test_interruption.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from broken_inputs import ERROR, FS_ARGS, OK, SKIPPED, Case, build_corpus, pickle_marker
from run_cli import ecgmoe, peak_mb

# ---- the broken corpus among good records: preprocess and predict ---------------------------

def _plain(text: str) -> str:
    """A path with its non-ASCII part dropped: matches however a tool spells an odd name."""
    import re

    printable = "".join(c for c in text if c.isascii() and c.isprintable())
    return re.sub(r"\\x[0-9a-f]{2}", "", printable)


def _rows_of(case: Case, rows: list[dict]) -> list[dict]:
    want = _plain(str(case.record))
    return [r for r in rows if _plain(str(r["path"])) == want]


def _check_outcomes(cases: list[Case], rows: list[dict], tool: str) -> dict[str, str]:
    """Every good record ok, every broken one a single error row with a one-line cause."""
    seen: dict[str, str] = {}
    problems = []
    for case in cases:
        mine = _rows_of(case, rows)
        status = {r["status"] for r in mine}
        if case.expect == SKIPPED:
            if mine:
                problems.append(f"{case.name}: expected no row, got {status}")
            seen[case.name] = "skipped (no row)"
            continue
        if status != {case.expect}:
            problems.append(f"{case.name}: expected {case.expect}, got {status or 'no row'}"
                            f" {[r.get('error') for r in mine]}")
            continue
        if case.expect == ERROR:
            if len(mine) != 1:
                problems.append(f"{case.name}: {len(mine)} error rows")
            msg = str(mine[0]["error"])
            if not msg or "\n" in msg or "Traceback" in msg or len(msg) > 600:
                problems.append(f"{case.name}: error is not one short line: {msg!r}")
            seen[case.name] = msg
        else:
            seen[case.name] = "ok"
    n_cases = len([c for c in cases if c.expect != SKIPPED])
    named = {id(r) for c in cases for r in _rows_of(c, rows)}
    strays = [r["path"] for r in rows if id(r) not in named]
    assert not strays, f"{tool}: rows for no input: {strays}"
    assert not problems, f"{tool}:\n" + "\n".join(problems)
    assert len({_plain(str(r["path"])) for r in rows}) == n_cases
    return seen


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, real_dir: Path) -> tuple[Path, list[Case]]:
    folder = tmp_path_factory.mktemp("corpus") / "in"
    return folder, build_corpus(folder, real_dir)


def _outcome_log(name: str, seen: dict[str, str]) -> None:
    """What each case gave, for docs/RELIABILITY.md (pytest -s shows it)."""
    print(f"\n{name} outcomes: " + json.dumps(seen, indent=1))


def test_preprocess_keeps_every_good_record_and_one_error_row_per_broken_one(
        corpus: tuple[Path, list[Case]], tmp_path: Path) -> None:
    import pandas as pd

    folder, cases = corpus
    r = ecgmoe("preprocess", folder, "-o", tmp_path / "ds", "--json", *FS_ARGS)
    assert r.returncode == 0, r.stderr[-1500:]
    assert "Traceback" not in r.stderr
    index = pd.read_parquet(tmp_path / "ds" / "index.parquet")
    per_record = index.drop_duplicates(subset=["path", "status"]).to_dict("records")
    seen = _check_outcomes(cases, per_record, "preprocess")
    assert not pickle_marker(folder).exists(), "a reader unpickled a .npy"
    _outcome_log("preprocess", seen)
    from ecgmoe_cli.io.dataset import open_dataset

    ds = open_dataset(tmp_path / "ds")
    assert len(ds) == int((index["status"] == "ok").sum()) > 0

    strict = ecgmoe("preprocess", folder, "-o", tmp_path / "ds2", "--quiet", "--strict", *FS_ARGS)
    assert strict.returncode != 0 and "Traceback" not in strict.stderr, strict.stderr[-800:]
    assert "error" in strict.stderr.lower()
    assert (tmp_path / "ds2" / "index.parquet").is_file()  # the dataset is still written

    summary = json.loads(r.stdout)  # nothing else on stdout: scripts parse --json
    assert summary["errors"] == sum(c.expect == ERROR for c in cases)
    assert summary["ok"] == sum(c.expect == OK for c in cases)


def _predict_rows(folder: Path, out: Path, weights: Path, *extra: str
                  ) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    import pandas as pd

    r = ecgmoe("predict", folder, "-o", out, "--weights", weights, "--workers", "0", "--quiet",
               *FS_ARGS, *extra)
    rows = pd.read_parquet(out).to_dict("records") if out.exists() else []
    return r, rows


def test_predict_keeps_every_good_record_and_one_error_row_per_broken_one(
        corpus: tuple[Path, list[Case]], tiny_weights: Path, tmp_path: Path) -> None:
    folder, cases = corpus
    r, rows = _predict_rows(folder, tmp_path / "mixed.parquet", tiny_weights, "--json")
    assert r.returncode == 0, r.stderr[-1500:]
    assert "Traceback" not in r.stderr
    seen = _check_outcomes(cases, rows, "predict")
    assert not pickle_marker(folder).exists(), "a reader unpickled a .npy"
    _outcome_log("predict", seen)

    # the good records alone give the same predictions: broken neighbours change nothing
    clean = tmp_path / "clean"
    clean.mkdir()
    good = [c for c in cases if c.expect == OK and c.name.startswith("good_")]
    for c in good:
        for f in c.files:
            (clean / f.name).symlink_to(f)
    _, alone = _predict_rows(clean, tmp_path / "clean.parquet", tiny_weights)
    prob_cols = [k for k in alone[0] if k.endswith("_prob")]
    assert prob_cols
    for c in good:
        a = _rows_of(c, rows)[0]
        b = next(x for x in alone if Path(x["path"]).name == c.record.name)
        # equal up to float32 rounding: a batch of other windows may change the BLAS path
        assert [a[k] for k in prob_cols] == pytest.approx([b[k] for k in prob_cols], abs=1e-5)

    strict, _ = _predict_rows(folder, tmp_path / "strict.parquet", tiny_weights, "--strict")
    assert strict.returncode != 0 and "Traceback" not in strict.stderr, strict.stderr[-800:]
    assert (tmp_path / "strict.parquet").exists()  # the report is still written in full

    summary = json.loads(r.stdout)  # nothing else on stdout: scripts parse --json
    assert summary["status"] == {"ok": sum(c.expect == OK for c in cases),
                                 "error": sum(c.expect == ERROR for c in cases)}


# ---- bounded memory: a 24 h Holter window block by window block ------------------------------

@pytest.mark.slow
def test_prepare_chunks_holds_a_24_hour_holter_in_bounded_memory(tmp_path: Path) -> None:
    from broken_inputs import holter_24h

    case = holter_24h(tmp_path)
    code = """
import resource, sys
from ecgmoe_cli.io.records.read import read_record
from ecgmoe_cli.pipeline.prepare import prepare_chunks
from ecgmoe_cli.signal.spec import PreprocessSpec
rec = read_record(sys.argv[1])
n = sum(len(c.n_valid) for c in prepare_chunks(rec, PreprocessSpec()))
print(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""
    r = subprocess.run([sys.executable, "-c", code, str(case.record)], capture_output=True,
                       text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-800:]
    windows, mb = map(int, r.stdout.split())
    assert windows == 24 * 360  # every 10 s window of the day
    assert mb < 1024, f"peak {mb} MB for a 24 h record"


GROWTH_MB = 120  # allowed peak-RSS growth from a 1 h to an 8 h record (raw samples + slack)


@pytest.fixture(scope="module")
def holters(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 1 h and an 8 h one-lead Holter, each alone in its folder."""
    from broken_inputs import holter_24h

    base = tmp_path_factory.mktemp("holters")
    out = []
    for hours in (1, 8):
        folder = base / f"h{hours}"
        folder.mkdir()
        holter_24h(folder, hours)
        out.append(folder)
    return out[0], out[1]


@pytest.mark.slow
def test_preprocess_memory_does_not_grow_with_record_length(holters: tuple[Path, Path],
                                                            tmp_path: Path) -> None:
    """8 h may cost its raw samples (~45 MB: int16 file + float32 copy) more than 1 h, not its
    2880 prepared windows (~350 MB): windows must stream out block by block."""
    short, long = holters
    a = peak_mb("preprocess", short, "-o", tmp_path / "a", "--quiet")
    b = peak_mb("preprocess", long, "-o", tmp_path / "b", "--quiet")
    assert b - a < GROWTH_MB, f"preprocess peak {a} MB for 1 h, {b} MB for 8 h"


@pytest.mark.slow
def test_predict_memory_does_not_grow_with_record_length(holters: tuple[Path, Path],
                                                         tiny_weights: Path,
                                                         tmp_path: Path) -> None:
    short, long = holters
    a = peak_mb("predict", short, "-o", tmp_path / "a.parquet", "--weights", tiny_weights,
                "--workers", "0", "--quiet")
    b = peak_mb("predict", long, "-o", tmp_path / "b.parquet", "--weights", tiny_weights,
                "--workers", "0", "--quiet")
    assert b - a < GROWTH_MB, f"predict peak {a} MB for 1 h, {b} MB for 8 h"


def test_hostile_xml_costs_one_error_row_not_memory(tiny_weights: Path, tmp_path: Path) -> None:
    """A billion-laughs aECG (3 GB if its entities expanded) beside a good one: refused at its
    DTD, so the run's peak memory is that of the good record alone."""
    import pandas as pd
    from broken_inputs import aecg_billion_laughs, good_aecg

    alone, mixed = tmp_path / "alone", tmp_path / "mixed"
    for folder in (alone, mixed):
        folder.mkdir()
        good_aecg(folder)
    aecg_billion_laughs(mixed)
    base = peak_mb("predict", alone, "-o", tmp_path / "a.parquet", "--weights", tiny_weights,
                   "--workers", "0", "--quiet")
    peak = peak_mb("predict", mixed, "-o", tmp_path / "b.parquet", "--weights", tiny_weights,
                   "--workers", "0", "--quiet")
    rows = pd.read_parquet(tmp_path / "b.parquet").set_index("record")["status"].to_dict()
    assert rows == {"good_aecg": "ok", "aecg_billion_laughs": "error"}
    assert peak - base < 50, f"predict peak {base} MB for the good record, {peak} MB with laughs"
