"""Fitting the rhythm head's RR evidence: the regressions, the dataset statistics, calibration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecgmoe_cli.io.dataset import open_dataset
from ecgmoe_cli.model.rhythm_evidence import N_RR_FEATURES, rr_irregularity
from ecgmoe_cli.training.rhythm_evidence import (
    MIN_POSITIVES,
    fit_evidence,
    logistic,
    window_rr_features,
)


def test_logistic_reaches_its_optimum():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    y = (x @ [2.0, -1.0, 0.0] + rng.logistic(size=400) > 0.5).astype(float)
    coef, intercept = logistic(x, y, l2=1.0)
    p = 1 / (1 + np.exp(-(x @ coef + intercept)))
    assert np.abs(x.T @ (p - y) + coef).max() < 1e-6  # the penalised gradient vanishes
    assert abs((p - y).sum()) < 1e-6
    assert coef[0] > 1.0 and coef[1] < -0.5 and abs(coef[2]) < 0.3


def _irregularity_data(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = (rng.random(n) < 0.2).astype(float)
    x = rng.normal(size=(n, N_RR_FEATURES))
    x[:, 2] += 2.0 * y  # nrmssd: higher in AF
    return x, y


def test_the_fusion_weighs_both_the_head_and_the_rr_statistics():
    rng = np.random.default_rng(1)
    x_tr, y_tr = _irregularity_data(2000, rng)
    x_va, y_va = _irregularity_data(600, rng)
    head_logit = 3.0 * (y_va - 0.5) + rng.normal(0, 1.5, len(y_va))
    y_tr[:5] = np.nan  # unknown targets are left out
    ev = fit_evidence("afib", x_tr, y_tr, x_va, head_logit, y_va)
    assert ev is not None and ev.label == "afib"
    assert ev.coef[2] > 0.5 and max(abs(c) for i, c in enumerate(ev.coef) if i != 2) < 0.3
    assert ev.weight > 0.2 and ev.rr_weight > 0.2
    few = y_va.copy()
    few[np.flatnonzero(few == 1)[MIN_POSITIVES - 1:]] = 0
    assert fit_evidence("afib", x_tr, y_tr, x_va, head_logit, few) is None


def test_dataset_statistics_follow_the_rows_order(tiny_dataset):
    ds = open_dataset(tiny_dataset)
    rows = ds.rows()[::-1][:7]
    got = window_rr_features(ds, rows)
    rr = torch.from_numpy(np.asarray(ds.arrays["rr"][rows][:, :, 0], np.float32))
    mask = torch.from_numpy(np.asarray(ds.arrays["rpeaks"][rows]) >= 0)
    assert np.array_equal(got, rr_irregularity(rr, mask).numpy())
    assert window_rr_features(ds, rows[:0]).shape == (0, N_RR_FEATURES)


def _af_dataset(path, n=90):
    """One-window records; every third is AF with scattered intervals, for rhythm's afib and the
    arrhythmia class (folds 1-10, 9 included)."""
    from fakes import TASK_NAMES, TINY_SPEC, fake_record

    from ecgmoe_cli.io.dataset_writer import DatasetWriter
    from ecgmoe_cli.pipeline.preprocess import add_record
    from ecgmoe_cli.tasks import get_task

    rng = np.random.default_rng(3)
    with DatasetWriter(path, TINY_SPEC, [get_task(t) for t in TASK_NAMES]) as w:
        for i in range(n):
            prep, labels = fake_record(i, rng)
            af = i % 3 == 0
            if af:
                k = int((prep.rpeaks[0] >= 0).sum())
                prep.rr[0, :k, 0] = rng.uniform(0.35, 1.1, k)
            labels = [labels[0] | {"y_rhythm__afib": float(af)}
                      | ({"y_arrhythmia": 3.0} if af else {})]  # afib
            add_record(w, prep, labels, fold=9 if i % 3 == 1 or i < 30 else i % 8 + 1)
    return path


def test_finetune_fits_the_evidence_and_predict_reads_it_back(tmp_path, tiny_backbone):
    from ecgmoe_cli.model.batch import to_torch
    from ecgmoe_cli.training.finetune import finetune_adapter
    from ecgmoe_cli.training.loop import FitConfig
    from ecgmoe_cli.weights.store import load_model

    ds_path = _af_dataset(tmp_path / "ds")
    out = tmp_path / "w"
    finetune_adapter("rhythm", ds_path, tiny_backbone, out, FitConfig(epochs=1, batch_size=16),
                     progress=False)
    model, _, _ = load_model(out, tasks=["rhythm"])
    ev = model.heads["rhythm"].evidence
    assert ev is not None and ev.label == "afib"
    ds = open_dataset(ds_path)
    rows = ds.rows()
    p = model.predict(to_torch(ds.batch(rows)), ["rhythm"])["rhythm"][:, 0].numpy()
    y = ds.column("y_rhythm__afib", rows)
    assert p[y == 1].min() > p[y == 0].max()  # scattered intervals are AF, whatever the head
    model.heads["rhythm"].evidence = None
    plain = model.predict(to_torch(ds.batch(rows)), ["rhythm"])["rhythm"][:, 0].numpy()
    assert not np.allclose(plain, p)


def test_train_calibrates_the_evidence_too(tmp_path):
    from fakes import my_cli
    from typer.testing import CliRunner

    from ecgmoe_cli.weights.store import load_model

    ds_path = _af_dataset(tmp_path / "ds")
    r = CliRunner().invoke(my_cli(), ["train", str(ds_path), "-o", str(tmp_path / "run"),
                                      "--config", "tiny", "--epochs", "1", "--batch-size", "16",
                                      "--quiet"])
    assert r.exit_code == 0, r.output
    model, _, _ = load_model(tmp_path / "run" / "weights", tasks=["rhythm", "sex", "arrhythmia"])
    assert model.heads["rhythm"].evidence is not None
    assert model.heads["arrhythmia"].evidence is not None  # on its AF classes
    assert model.heads["sex"].evidence is None  # no afib label


def test_a_label_with_few_validation_positives_takes_a_pooled_threshold(tmp_path, tiny_backbone,
                                                                       monkeypatch):
    from fakes import TASK_NAMES, TINY_SPEC, fake_record

    from ecgmoe_cli.io.dataset_writer import DatasetWriter
    from ecgmoe_cli.pipeline.preprocess import add_record
    from ecgmoe_cli.tasks import get_task
    from ecgmoe_cli.training import calibrate
    from ecgmoe_cli.training.finetune import finetune_adapter
    from ecgmoe_cli.training.loop import FitConfig
    from ecgmoe_cli.weights.store import load_model

    rng = np.random.default_rng(5)
    path = tmp_path / "ds"
    with DatasetWriter(path, TINY_SPEC, [get_task(t) for t in TASK_NAMES]) as w:
        for i in range(60):  # fold 9: the first 8 records, 4 of them tachycardic
            prep, labels = fake_record(i, rng)
            add_record(w, prep, labels, fold=9 if i < 8 else i % 8 + 1)
    calls = []
    real_fit = calibrate.fit_thresholds

    def spy(probs, y):
        calls.append((probs.copy(), y.copy(), real_fit(probs, y)))
        return list(calls[-1][2])

    monkeypatch.setattr(calibrate, "fit_thresholds", spy)
    finetune_adapter("rhythm", path, tiny_backbone, tmp_path / "w",
                     FitConfig(epochs=1, batch_size=16), progress=False)
    model, _, _ = load_model(tmp_path / "w", tasks=["rhythm"])
    j = get_task("rhythm").labels.index("tachy")
    (val_probs, val_y, _), *pooled = calls
    assert val_probs.shape[0] == 8
    assert 0 < np.nansum(val_y[:, j]) < calibrate.MIN_THRESHOLD_POSITIVES
    # afib and brady have no positive at all, irregular no known target: each pooled too
    by_size = [c for c in pooled if c[0].shape[0] == 60]
    assert len(by_size) == len(pooled) == 4
    ds = open_dataset(path)
    n_tachy = np.nansum(ds.column("y_rhythm__tachy", ds.rows()))
    tachy = next(c for c in pooled if np.nansum(c[1]) == n_tachy)
    assert model.heads["rhythm"].thresholds[j] == pytest.approx(tachy[2][0])


def test_finetune_fits_the_arrhythmia_heads_af_evidence(tmp_path, tiny_backbone):
    """A multiclass head gets the evidence on its AF classes, and it moves them on new data."""
    from ecgmoe_cli.model.batch import to_torch
    from ecgmoe_cli.tasks import ARRHYTHMIA_CLASSES
    from ecgmoe_cli.training.finetune import finetune_adapter
    from ecgmoe_cli.training.loop import FitConfig
    from ecgmoe_cli.weights.store import load_model

    ds_path = _af_dataset(tmp_path / "ds")
    out = tmp_path / "w"
    finetune_adapter("arrhythmia", ds_path, tiny_backbone, out,
                     FitConfig(epochs=1, batch_size=16), progress=False)
    model, _, _ = load_model(out, tasks=["arrhythmia"])
    assert model.heads["arrhythmia"].evidence is not None
    ds = open_dataset(ds_path)
    rows = ds.rows()
    af = [ARRHYTHMIA_CLASSES.index(c) for c in ("afib", "afib_rvr")]
    p = model.predict(to_torch(ds.batch(rows)), ["arrhythmia"])["arrhythmia"][:, af].sum(1)
    y = ds.column("y_arrhythmia", rows) == 3
    assert p[y].min() > p[~y].max()
