"""The per-beat head: RR context, labels from .atr, training, leave-records-out folds, weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.labels.atr import Annotations, aami_labels, af_seconds
from ecgmoe_cli.model.beat_head import (
    N_RR,
    BeatHead,
    BeatHeadConfig,
    rr_context,
    window_relative,
)
from ecgmoe_cli.tasks import AAMI_CLASSES
from ecgmoe_cli.training.beat_class import (
    BeatFit,
    BeatSet,
    beat_metrics,
    classify,
    cross_validate,
    fit_head,
    record_folds,
)
from ecgmoe_cli.weights.store import load_beat_head, save_beat_head


def test_rr_context_marks_a_premature_beat_and_zeroes_padding() -> None:
    rr = torch.zeros(1, 4, 4)
    rr[0, :3] = torch.tensor([[0.8, 0.8, 0.8, 1.0], [0.5, 1.1, 0.8, 0.62], [1.1, 0.8, 0.8, 1.4]])
    mask = torch.tensor([[True, True, True, False]])
    ctx = rr_context(rr, mask)
    assert ctx.shape == (1, 4, N_RR)
    assert ctx[0, 1, 3] < 0 < ctx[0, 2, 3]  # pre / local: short before the premature beat
    assert ctx[0, 1, 6] < 0  # shorter than the window's median pre-RR
    assert torch.all(ctx[0, 3] == 0)


def test_window_relative_is_the_difference_from_the_window_median() -> None:
    tokens = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [5.0, 2.0], [9.0, 9.0]]])
    mask = torch.tensor([[True, True, True, False]])
    rel = window_relative(tokens, mask)
    assert rel[0, :3].tolist() == [[0.0, 0.0], [0.0, 0.0], [4.0, 2.0]]
    assert rel[0, 3].tolist() == [0.0, 0.0]


def test_aami_labels_match_within_tolerance_only() -> None:
    ann = Annotations(np.array([1.0, 2.0, 3.0]), np.array(["N", "V", "A"]), np.zeros(0), [])
    got = aami_labels(ann, np.array([1.05, 1.98, 3.3, 2.9]))
    assert got.tolist() == ["N", "V", "", "S"]


def test_af_seconds_sums_the_afib_segments() -> None:
    ann = Annotations(np.zeros(0), np.zeros(0, str), np.array([0.0, 10.0, 25.0]),
                      ["N", "AFIB", "N"])
    assert af_seconds(ann, 60.0) == pytest.approx(15.0)


def _separable_set(n_records: int = 6, per: int = 200, d: int = 8, seed: int = 0) -> BeatSet:
    """Beats whose class shows in one token dimension and in their RR context."""
    rng = np.random.default_rng(seed)
    label = rng.choice(3, size=n_records * per, p=[0.7, 0.15, 0.15])
    tokens = rng.normal(0, 0.3, (label.size, d)).astype(np.float32)
    tokens[:, 0] += np.where(label == 2, 3.0, 0.0)  # V: another shape
    ctx = np.zeros((label.size, N_RR), np.float32)
    ctx[:, 3] = np.where(label == 1, -0.5, 0.0) + rng.normal(0, 0.05, label.size)  # S: early
    record = np.repeat([f"r{i}" for i in range(n_records)], per)
    return BeatSet(tokens, tokens - np.median(tokens, 0), ctx, label.astype(np.int64), record, {})


def test_fit_head_learns_and_cross_validation_scores_held_out_records() -> None:
    data = _separable_set()
    fit = BeatFit(epochs=15, batch_size=64, seed=0)
    head = fit_head(data, np.arange(len(data.label)), fit)
    assert (classify(head, data, np.arange(len(data.label))) == data.label).mean() > 0.95
    pred = cross_validate(data, 3, fit)
    m = beat_metrics(data.label, pred)
    assert m["per_class"]["V"]["se"] > 0.9 and m["per_class"]["S"]["se"] > 0.8
    assert np.array(m["confusion"]).sum() == len(data.label)


def test_record_folds_partition_the_records() -> None:
    records = np.array(["b", "a", "c", "a", "d", "e"])
    folds = record_folds(records, 2)
    flat = [r for f in folds for r in f]
    assert sorted(flat) == ["a", "b", "c", "d", "e"] and len(flat) == len(set(flat))
    with pytest.raises(EcgMoeError, match="--folds"):
        record_folds(records, 9)


def test_beat_metrics_counts_se_and_ppv() -> None:
    label = np.array([0, 0, 2, 2, 1, -1])
    pred = np.array([0, 2, 2, 2, 0, 2])
    m = beat_metrics(label, pred)
    assert m["per_class"]["V"] == {"n": 2, "predicted": 3, "se": 1.0, "ppv": 2 / 3}
    assert m["unmatched_detections"] == 1 and m["n"] == 5


def test_saved_head_loads_and_another_backbone_is_refused(tmp_path: Path) -> None:
    torch.manual_seed(0)
    head = BeatHead(BeatHeadConfig(d_model=8, hidden=4))
    save_beat_head(head, tmp_path, "a" * 64, {"note": 1})
    loaded, meta = load_beat_head(tmp_path, "a" * 64)
    x, r, c = torch.randn(3, 8), torch.randn(3, 8), torch.randn(3, N_RR)
    assert torch.allclose(loaded(x, r, c), head(x, r, c))
    assert meta["classes"] == list(AAMI_CLASSES)
    with pytest.raises(EcgMoeError, match="trained on backbone aaaaaaaaaaaa, not on this one"):
        load_beat_head(tmp_path, "b" * 64)
    sidecar = tmp_path / "heads" / "beat_class.json"
    bad = json.loads(sidecar.read_text())
    bad["tensors_hash"] = "0" * 64
    sidecar.write_text(json.dumps(bad))
    with pytest.raises(EcgMoeError, match="do not match the hash"):
        load_beat_head(tmp_path, "a" * 64)
    shutil.rmtree(tmp_path / "heads")
    with pytest.raises(EcgMoeError, match="no beat head"):
        load_beat_head(tmp_path, "a" * 64)
