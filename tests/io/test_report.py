import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.arrow_table import rows_to_table
from ecgmoe_cli.io.report import ReportWriter, parse_shard, shard_of
from ecgmoe_cli.pipeline.predict.schema import report_schema
from ecgmoe_cli.tasks import TASKS


def _row(i: int) -> dict[str, object]:
    return {"path": f"r{i}.hea", "record": f"r{i}", "status": "ok", "age_years": float(i)}


def test_schema_has_columns_for_every_task_kind() -> None:
    names = report_schema(TASKS.values()).names
    for col in ["rhythm_prob", "rhythm_afib_prob", "rhythm_pred", "hypertrophy_lvh_prob",
                "arrhythmia_class", "arrhythmia_prob", "age_years", "rr_interval_ms",
                "sex_prob", "weights_id", "spec_hash"]:
        assert col in names


def test_single_file_appears_only_at_close_and_holds_every_row(tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    w = ReportWriter(out, report_schema([TASKS["age"]]), rows_per_group=3, rows_per_part=6)
    for i in range(20):
        w.write(_row(i))
    assert not out.exists()
    w.close()
    table = pq.read_table(out)
    assert table.column("record").to_pylist() == [f"r{i}" for i in range(20)]
    assert not (tmp_path / "out.parquet.partial").exists()


def test_abort_keeps_completed_parts_and_resume_finishes(tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    schema = report_schema([TASKS["age"]])
    w = ReportWriter(out, schema, rows_per_group=2, rows_per_part=4)
    for i in range(10):
        w.write(_row(i))
    w.abort()  # as on Ctrl-C: 8 rows in sealed parts, 2 in the open part are dropped
    assert not out.exists()
    w2 = ReportWriter(out, schema, rows_per_group=2, rows_per_part=4, resume=True)
    done = w2.done_keys()
    assert set(done) == {f"r{i}.hea" for i in range(8)}
    for i in range(20):
        if f"r{i}.hea" not in done:
            w2.write(_row(i))
    w2.close()
    records = pq.read_table(out).column("record").to_pylist()
    assert sorted(records) == sorted(f"r{i}" for i in range(20))


def test_dataset_output_shards_union_reads_as_one_table(tmp_path: Path) -> None:
    schema = report_schema([TASKS["age"]])
    for shard in [(0, 2), (1, 2)]:
        w = ReportWriter(tmp_path / "ds", schema, shard=shard)
        for i in range(30):
            if shard_of(f"r{i}.hea", 2) == shard[0]:
                w.write(_row(i))
        w.close()
    table = pq.read_table(tmp_path / "ds")
    assert sorted(table.column("record").to_pylist()) == sorted(f"r{i}" for i in range(30))


def test_shard_parsing_and_determinism() -> None:
    assert parse_shard("1/4") == (1, 4)
    for bad in ["4/4", "x", "1/0", "-1/2"]:
        with pytest.raises(EcgMoeError):
            parse_shard(bad)
    # pinned: a record keeps its shard on every machine and Python run (no salted hash())
    assert [shard_of(k, 1000) for k in ("a/b.hea", "r1", "ptbxl/00001_lr.hea")] == [934, 861, 972]
    assert len({shard_of(f"r{i}", 4) for i in range(100)}) == 4


def test_a_fresh_run_replaces_a_finished_report(tmp_path):
    out = tmp_path / "r.parquet"
    for rows in ([1, 2], [3]):
        w = ReportWriter(out, report_schema([TASKS["age"]]))
        for i in rows:
            w.write(_row(i))
        w.close()
    assert pq.read_table(out).column("path").to_pylist() == ["r3.hea"]


def test_rows_to_table_equals_pyarrows_own_conversion() -> None:
    schema = pa.schema([("s", pa.string()), ("f", pa.float32()), ("d", pa.float64()),
                        ("i", pa.int32()), ("l", pa.int64()), ("b", pa.bool_())])
    rows = [{"s": "x", "f": 1.5, "d": 0.1, "i": 3, "l": np.int64(7), "b": True},
            {"s": None, "f": None},  # None and missing keys: nulls
            {"s": "ü€ ✓", "f": np.float32(2.25), "d": 1e300, "i": np.int32(-1), "l": 2**40,
             "b": np.bool_(False)},
            {"s": "", "f": 0.0, "d": -0.0, "i": 0, "l": 0, "b": True}]
    ours = rows_to_table(rows, schema)
    assert ours.equals(pa.Table.from_pylist(rows, schema=schema))
    assert ours.column("s").null_count == 1 and ours.column("i").null_count == 1
    assert ours.column("b").to_pylist() == [True, None, False, True]
    nan = rows_to_table([{"d": float("nan")}], schema).column("d")
    assert nan.null_count == 0 and math.isnan(nan[0].as_py())  # NaN stays a value, as in pyarrow
    with pytest.raises(TypeError, match="column s"):
        rows_to_table([{"s": 3}], schema)


def test_writing_a_report_does_not_import_pandas(tmp_path: Path) -> None:
    """pyarrow's Python-value conversion imports pandas (~0.4 CPU-s) on first use; we avoid it."""
    code = ("import sys\n"
            "from ecgmoe_cli.io.report import ReportWriter\n"
            "from ecgmoe_cli.pipeline.predict.schema import report_schema\n"
            "from ecgmoe_cli.tasks import TASKS\n"
            f"w = ReportWriter({str(tmp_path / 'r.parquet')!r}, report_schema(TASKS.values()),"
            " rows_per_group=2)\n"
            "for i in range(5):\n"
            "    w.write({'path': f'{i}.hea', 'record': str(i), 'status': 'ok',"
            " 'age_years': 1.0})\n"
            "w.close()\n"
            "print('pandas' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert pq.read_table(tmp_path / "r.parquet").num_rows == 5
