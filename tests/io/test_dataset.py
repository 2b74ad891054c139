"""The dataset format: streaming writer, atomic commit, memmap reader, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fakes import TASK_NAMES, TINY_SPEC, fake_record, make_fake_dataset

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.dataset import open_dataset
from ecgmoe_cli.io.dataset_writer import DatasetWriter
from ecgmoe_cli.pipeline.preprocess import add_record
from ecgmoe_cli.tasks import get_task


def test_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    recs = [fake_record(i, rng, n_windows=n) for i, n in enumerate([2, 1, 3])]
    tasks = [get_task(t) for t in TASK_NAMES]
    with DatasetWriter(tmp_path / "ds", TINY_SPEC, tasks) as w:
        for i, (prep, labels) in enumerate(recs):
            add_record(w, prep, labels, fold=i + 1)
        w.add_error("/x/bad.edf", "bad", "truncated file", fs_in=250.0)
    ds = open_dataset(tmp_path / "ds")
    assert len(ds) == 6 and ds.spec == TINY_SPEC
    assert [t.name for t in ds.tasks] == list(TASK_NAMES)
    assert isinstance(ds.arrays["signals"], np.memmap) and ds.arrays["signals"].dtype == np.float16
    want = np.concatenate([p.signal for p, _ in recs])
    np.testing.assert_allclose(ds.arrays["signals"], want, atol=2e-3)  # float16 rounding
    np.testing.assert_array_equal(ds.arrays["rpeaks"], np.concatenate([p.rpeaks for p, _ in recs]))
    err = ds.index[ds.index.status == "error"]
    assert list(err.record) == ["bad"] and err.row.item() == -1 and err.fs_in.item() == 250.0
    np.testing.assert_array_equal(ds.rows(fold=3), [3, 4, 5])
    np.testing.assert_array_equal(ds.rows(fold=[1, 2]), [0, 1, 2])
    b = ds.batch(np.array([5, 0]))
    assert b["signal"].dtype == np.float32 and b["signal"].shape == (2, 12, 400)
    assert b["n_valid"].dtype == np.int64 and b["rpeaks"].dtype == np.int64
    np.testing.assert_allclose(b["signal"][0], recs[2][0].signal[2], atol=2e-3)  # order kept
    tg = ds.targets(np.array([2, 0]), tasks)
    assert tg["sex"].shape == (2, 1) and tg["rr_interval"].shape == (2,)
    assert tg["rhythm"].shape == (2, 4) and np.isnan(tg["rhythm"][:, 3]).all()
    assert tg["rr_interval"][0] == recs[1][1][0]["y_rr_interval"]


def test_exception_inside_with_leaves_nothing(tmp_path):
    rng = np.random.default_rng(0)
    tasks = [get_task(t) for t in TASK_NAMES]
    with pytest.raises(RuntimeError), DatasetWriter(tmp_path / "ds", TINY_SPEC, tasks) as w:
        add_record(w, *fake_record(0, rng), fold=1)
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_refused_unless_overwrite(tmp_path):
    make_fake_dataset(tmp_path / "ds", n_records=4)
    with pytest.raises(EcgMoeError, match="exists"):
        DatasetWriter(tmp_path / "ds", TINY_SPEC, [])
    tasks = [get_task(t) for t in TASK_NAMES]
    with DatasetWriter(tmp_path / "ds", TINY_SPEC, tasks, overwrite=True) as w:
        add_record(w, *fake_record(0, np.random.default_rng(0)), fold=1)
    assert len(open_dataset(tmp_path / "ds")) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


@pytest.mark.parametrize("damage", ["missing", "no_spec", "truncated", "bad_tasks"])
def test_damaged_dataset_is_a_clear_error(tmp_path, damage):
    ds = make_fake_dataset(tmp_path / "ds", n_records=4)
    if damage == "no_spec":
        (ds / "spec.json").unlink()
    elif damage == "truncated":
        data = (ds / "rr.npy").read_bytes()
        (ds / "rr.npy").write_bytes(data[: len(data) // 2])
    elif damage == "bad_tasks":
        (ds / "tasks.json").write_text(json.dumps(["no_such_task"]))
    target = tmp_path / "nope" if damage == "missing" else ds
    with pytest.raises(EcgMoeError) as e:
        open_dataset(target)
    assert str(target) in str(e.value) and "\n" not in str(e.value)


def test_index_is_streamed_in_row_groups_and_unknown_columns_refused(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from ecgmoe_cli.io import dataset_writer as dsmod

    monkeypatch.setattr(dsmod, "_INDEX_ROWS_PER_GROUP", 3)
    ds = make_fake_dataset(tmp_path / "ds", n_records=10)
    meta = pq.ParquetFile(ds / "index.parquet").metadata
    assert meta.num_rows == 11 and meta.num_row_groups == 4  # rows leave memory every 3
    assert [meta.row_group(i).num_rows for i in range(4)] == [3, 3, 3, 2]
    with pytest.raises(EcgMoeError, match="y_potassium__abnormal"), \
            DatasetWriter(tmp_path / "ds2", TINY_SPEC, [get_task("sex")]) as w:
        prep, _ = fake_record(0, np.random.default_rng(0))
        add_record(w, prep, [{"y_sex__female": 1.0, "y_potassium__abnormal": 0.0}], fold=1)
    assert not (tmp_path / "ds2").exists()


def test_several_datasets_read_as_one(tmp_path):
    from ecgmoe_cli.io.dataset import open_datasets

    a, b = tmp_path / "a", tmp_path / "b"
    make_fake_dataset(a, n_records=6, seed=1)
    make_fake_dataset(b, n_records=4, seed=2)
    one = open_datasets([a, b])
    da, db = open_dataset(a), open_dataset(b)
    assert len(one) == len(da) + len(db)
    rows = np.array([len(da) + 1, 0, len(da)])
    got = one.batch(rows)
    want_a, want_b = da.batch(np.array([0])), db.batch(np.array([1, 0]))
    np.testing.assert_array_equal(got["signal"][1], want_a["signal"][0])
    np.testing.assert_array_equal(got["signal"][[0, 2]], want_b["signal"])
    assert len(one.rows()) == len(da.rows()) + len(db.rows())
