"""The per-beat head: RR context, labels from .atr, training, leave-records-out folds, weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.labels.atr import Annotations, aami_labels, af_seconds, in_af
from ecgmoe_cli.model.beat_head import BeatHead, BeatHeadConfig, window_relative
from ecgmoe_cli.signal.beat_features import (
    BEAT_FEATURES,
    N_BEAT_FEATURES,
    beat_features,
    record_context,
)
from ecgmoe_cli.signal.beats import rr_features
from ecgmoe_cli.tasks import AAMI_CLASSES
from ecgmoe_cli.training.beat_class import (
    BeatFit,
    BeatSet,
    beat_metrics,
    classify,
    cross_validate,
    fit_head,
    head_from_booster,
    held_out_metrics,
    record_folds,
    train_booster,
)
from ecgmoe_cli.weights.store import load_beat_head, save_beat_head


def _window(wide_all: bool, fs: float = 250.0, k: int = 16) -> tuple[np.ndarray, ...]:
    """One 10 s, 2-lead window: beats every 0.8 s, the 7th early (0.5 s) and the 10th a wide,
    inverted PVC; with wide_all every beat is wide (a bundle-branch block)."""
    at = np.r_[np.arange(7) * 0.8, 5.3, 6.1 + np.arange(5) * 0.8] + 0.3
    t = np.arange(int(10 * fs)) / fs
    x = np.zeros((2, t.size), np.float32)
    for i, a in enumerate(at):
        pvc = i == 9
        width, amp = (0.03, -1.5) if pvc else ((0.025, 1.0) if wide_all else (0.01, 1.0))
        x += (amp * np.exp(-((t - a) ** 2) / (2 * width ** 2)) * [[1.0], [0.5]]).astype(np.float32)
    r = np.round(at * fs).astype(np.int64)
    rpeaks = np.full((1, k), -1, np.int32)
    rr = np.zeros((1, k, 4), np.float32)
    rpeaks[0, :r.size], rr[0, :r.size] = r, rr_features(r, fs)
    return x[None], rpeaks, rr


def _features(x: np.ndarray, rpeaks: np.ndarray, rr: np.ndarray, fs: float = 250.0,
              starts: np.ndarray | None = None) -> np.ndarray:
    """beat_features with the windows taken as one record (consecutive 10 s windows)."""
    starts = np.arange(len(x)) * 10.0 if starts is None else starts
    return beat_features(x, rpeaks, rr, fs, record_context(x, rpeaks, rr, starts, fs))


def test_beat_features_mark_the_premature_and_the_wide_beat_against_the_window() -> None:
    col = {name: i for i, name in enumerate(BEAT_FEATURES)}
    for wide_all in (False, True):
        x, rpeaks, rr = _window(wide_all)
        f = _features(x, rpeaks, rr)
        assert f.shape == (1, 16, N_BEAT_FEATURES) and f.dtype == np.float32
        assert np.all(f[0, 13:] == 0)  # padding
        normal = [2, 3, 4, 11]
        assert f[0, 7, col["log_pre_local"]] < -0.2 and f[0, 7, col["log_pre_post"]] < -0.3
        assert f[0, 7, col["log_pre_median"]] < -0.3
        assert np.all(np.abs(f[0, normal, col["log_pre_median"]]) < 0.05)
        # the PVC differs from the window's dominant beat, the others (wide or not) do not
        assert f[0, 9, col["corr_qrs"]] < 0 < 0.95 < f[0, normal, col["corr_qrs"]].min()
        assert f[0, 9, col["log_diff_qrs"]] > f[0, normal, col["log_diff_qrs"]].max() + 2
        assert np.all(np.abs(f[0, normal, col["log_width"]]) < 0.1)
    # absolute width tells a bundle-branch block from narrow beats
    narrow = _features(*_window(False))[0, 2, col["qrs_width_s"]]
    wide = _features(*_window(True))[0, 2, col["qrs_width_s"]]
    assert wide > 1.5 * narrow


def test_masked_leads_change_no_feature() -> None:
    """A 2-lead window among twelve canonical leads (ten masked, zero) gives the features of the
    2-lead window alone: the zero leads are skipped, not computed."""
    x, rpeaks, rr = _window(False)
    twelve = np.zeros((1, 12, x.shape[-1]), np.float32)
    twelve[:, [1, 10]] = x
    assert np.array_equal(_features(twelve, rpeaks, rr), _features(x, rpeaks, rr))


def test_beat_features_see_af_as_irregular_and_a_lone_early_beat_as_regular() -> None:
    col = BEAT_FEATURES.index("rr_irregularity")
    rng = np.random.default_rng(0)
    x, rpeaks, rr = _window(False)
    sinus = _features(x, rpeaks, rr)[0, 0, col]
    r = np.cumsum(rng.uniform(0.4, 1.1, 12) * 250).astype(np.int64)
    rpeaks[0, :12], rpeaks[0, 12:] = r, -1
    rr[0, :12], rr[0, 12:] = rr_features(r, 250.0), 0
    af = _features(x, rpeaks, rr)[0, 0, col]
    assert sinus < 0.05 < 0.15 < af


def test_record_context_sees_a_run_that_fills_its_window_as_premature() -> None:
    """Five 10 s windows at 0.8 s RR, the third a run at 0.45 s: against its own window the
    run's beats are on time, against the record they are early; a PVC in the run differs from
    the record's dominant beat too."""
    fs, k = 250.0, 32
    times = np.r_[np.arange(0.3, 20, 0.8), np.arange(20.2, 30, 0.45), np.arange(30.3, 50, 0.8)]
    peaks = np.round(times * fs).astype(np.int64)
    feats = rr_features(peaks, fs)
    t = np.arange(int(50 * fs)) / fs
    pvc = int(np.searchsorted(times, 25.0))
    x = np.zeros((2, t.size), np.float32)
    for i, a in enumerate(times):
        width, amp = (0.03, -1.5) if i == pvc else (0.01, 1.0)
        x += (amp * np.exp(-((t - a) ** 2) / (2 * width ** 2)) * [[1.0], [0.5]]).astype(np.float32)
    w = int(10 * fs)
    windows = x.reshape(2, 5, w).transpose(1, 0, 2)
    rpeaks = np.full((5, k), -1, np.int32)
    rr = np.zeros((5, k, 4), np.float32)
    for i in range(5):
        mine = np.flatnonzero((peaks >= i * w) & (peaks < (i + 1) * w))
        rpeaks[i, :mine.size], rr[i, :mine.size] = peaks[mine] - i * w, feats[mine]
    f = _features(windows, rpeaks, rr)
    col = {name: i for i, name in enumerate(BEAT_FEATURES)}
    inner = slice(3, 15)  # beats of the run away from its edges
    assert np.all(np.abs(f[2, inner, col["log_pre_median"]]) < 0.1)  # the window: on time
    assert np.all(f[2, inner, col["log_pre_context"]] < -0.4)  # the record: early
    onset = f[2, inner, col["log_onset_step"]]  # every beat of the run carries its onset step
    assert np.allclose(onset, np.log(0.45 / 0.7), atol=0.02)  # 0.8 s, 0.7 s (20.2), 0.45 s
    assert np.all(f[0, rpeaks[0] >= 0, col["log_onset_step"]] == 0)  # sinus: no fast stretch
    j = pvc - int(np.flatnonzero(peaks >= 2 * w)[0])
    others = [i for i in range(3, 15) if i != j]
    assert f[2, j, col["corr_qrs_context"]] < 0 < 0.95 < f[2, others, col["corr_qrs_context"]].min()
    assert np.all(f[:, :, 0][rpeaks < 0] == 0)  # padding


def test_a_rate_that_rises_gradually_has_no_onset_step() -> None:
    """Sinus acceleration, 2 % shorter RR a beat from 0.9 s to 0.5 s: the beats end up fast
    against the record, but no step between two beats is abrupt, so none reads as a PAC."""
    fs, k = 250.0, 64
    rr = np.r_[np.full(60, 0.9), 0.9 * 0.98 ** np.arange(1, 30), np.full(60, 0.5)]
    times = 0.3 + np.cumsum(rr)
    peaks = np.round(times * fs).astype(np.int64)
    n = int(np.ceil(times[-1] / 10.0)) + 1
    t = np.arange(int(n * 10 * fs)) / fs
    x = np.zeros((1, t.size), np.float32)
    for a in times:
        x += np.exp(-((t - a) ** 2) / (2 * 0.01 ** 2)).astype(np.float32)
    w = int(10 * fs)
    windows = x.reshape(1, n, w).transpose(1, 0, 2)
    rpeaks = np.full((n, k), -1, np.int32)
    feats = np.zeros((n, k, 4), np.float32)
    rrf = rr_features(peaks, fs)
    for i in range(n):
        mine = np.flatnonzero((peaks >= i * w) & (peaks < (i + 1) * w))
        rpeaks[i, :mine.size], feats[i, :mine.size] = peaks[mine] - i * w, rrf[mine]
    f = _features(windows, rpeaks, feats)[rpeaks >= 0]
    col = {name: i for i, name in enumerate(BEAT_FEATURES)}
    assert (f[:, col["log_pre_context"]] < -0.2).sum() > 30  # fast against the record
    assert np.all(f[:, col["log_onset_step"]] > np.log(0.9))  # yet never an abrupt step


def test_the_supraventricular_rule_moves_n_to_s_and_leaves_ventricular_beats() -> None:
    """A beat that opens a fast stretch abruptly with the dominant QRS is S whatever the trees
    say about N and S; the trees' V stays V, a premature beat of another shape is theirs, and
    a 12 % drop (within a sinus arrhythmia) is not abrupt enough."""
    head = BeatHead(BeatHeadConfig(d_model=4, n_components=2))
    col = {name: i for i, name in enumerate(BEAT_FEATURES)}
    feats = torch.zeros(5, N_BEAT_FEATURES)
    feats[:, col["log_onset_step"]] = torch.log(torch.tensor([0.67, 0.67, 0.67, 1.0, 0.88]))
    feats[:, col["corr_qrs_context"]] = torch.tensor([0.99, 0.99, 0.5, 0.99, 0.99])
    trees = torch.tensor([[0.8, 0.1, 0.1, 0.0, 0.0], [0.1, 0.1, 0.8, 0.0, 0.0]])
    logits = torch.log(trees[[0, 1, 0, 0, 0]])
    p = head.supraventricular(logits, feats).softmax(-1)
    assert p.argmax(-1).tolist() == [1, 2, 0, 0, 0]  # S; V kept; other shape; on time; 12 %
    assert p[0, 1].item() == pytest.approx(0.9) and p[0, 0].item() == 0
    off = BeatHead(BeatHeadConfig(d_model=4, n_components=2, sv_min_corr=1.1))
    assert torch.equal(off.supraventricular(logits, feats), logits)
    with pytest.raises(ValueError, match="sv_max_step"):
        BeatHeadConfig(d_model=4, n_components=2, sv_max_step=1.5)


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


def test_af_seconds_sums_the_afib_segments_and_in_af_marks_their_beats() -> None:
    ann = Annotations(np.zeros(0), np.zeros(0, str), np.array([5.0, 10.0, 25.0, 40.0]),
                      ["N", "AFIB", "N", "AFL"])
    assert af_seconds(ann, 60.0) == pytest.approx(35.0)
    assert in_af(ann, np.array([1.0, 6.0, 10.0, 24.9, 25.0, 50.0])).tolist() == [
        False, False, True, True, False, True]  # before the first note: not AF


def _separable_set(n_records: int = 6, per: int = 200, d: int = 8, seed: int = 0) -> BeatSet:
    """Beats whose class shows in one token dimension (V) and in one timing feature (S)."""
    rng = np.random.default_rng(seed)
    label = rng.choice(3, size=n_records * per, p=[0.7, 0.15, 0.15])
    relative = rng.normal(0, 0.3, (label.size, d)).astype(np.float32)
    relative[:, 0] += np.where(label == 2, 3.0, 0.0)  # V: another shape
    feats = np.zeros((label.size, N_BEAT_FEATURES), np.float32)
    feats[:, 0] = np.where(label == 1, -0.5, 0.0) + rng.normal(0, 0.05, label.size)  # S: early
    record = np.repeat([f"r{i}" for i in range(n_records)], per)
    return BeatSet(relative, feats, label.astype(np.int64), record, np.zeros(label.size, bool), {},
                   250.0)


def test_fit_head_learns_and_cross_validation_scores_held_out_records() -> None:
    data = _separable_set()
    fit = BeatFit(rounds=40, n_components=4, seed=0)
    head = fit_head(data, np.arange(len(data.label)), fit)
    assert head.config.n_trees == 40 * len(AAMI_CLASSES) and head.config.depth >= 1
    assert (classify(head, data, np.arange(len(data.label)), chunk=100) == data.label).mean() > 0.95
    pred = cross_validate(data, 3, fit)
    data.in_af[:100] = True  # beats of an annotated AF episode: scored apart too
    m = held_out_metrics(data, pred, 3)
    assert m["per_class"]["V"]["se"] > 0.9 and m["per_class"]["S"]["se"] > 0.8
    assert np.array(m["confusion"]).sum() == len(data.label) == m["outside_af"]["n"] + 100
    assert m["outside_af"] == beat_metrics(data.label[100:], pred[100:])


def test_the_head_computes_what_lightgbm_predicts_even_on_its_thresholds() -> None:
    """The trees as tensors give LightGBM's own probabilities, also for inputs that sit exactly
    on a split threshold (float32 inputs against LightGBM's double thresholds)."""
    rng = np.random.default_rng(1)
    n, d = 600, 6
    shell = BeatHead(BeatHeadConfig(d_model=d, n_components=2))
    shell.token_axes.copy_(torch.eye(d)[:2])
    x = shell.inputs(torch.as_tensor(rng.normal(size=(n, d)).astype(np.float32)),
                     torch.as_tensor(rng.normal(size=(n, N_BEAT_FEATURES)).astype(np.float32)))
    x = x.numpy()
    y = (x[:, 0] > 0.3).astype(np.int64) + 2 * (x[:, -1] > 0.5)  # N, S, V and F beats
    booster = train_booster(x, y, np.ones(n), BeatFit(rounds=15, min_leaf=5))
    head = head_from_booster(booster, shell)
    assert head.config.n_trees == 15 * len(AAMI_CLASSES)
    on = x[:50].copy()  # every beat on the first tree's root threshold
    root = booster.dump_model()["tree_info"][0]["tree_structure"]
    on[:, root["split_feature"]] = np.float32(root["threshold"])
    for probe in (x, on):
        got = head.trees(torch.as_tensor(probe)).softmax(-1).numpy()
        np.testing.assert_allclose(got, booster.predict(probe), rtol=1e-4, atol=1e-6)
    assert head.trees(torch.zeros(2, 0, x.shape[1])).shape == (2, 0, len(AAMI_CLASSES))  # no beats


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
    head = fit_head(_separable_set(), np.arange(1200), BeatFit(rounds=5, n_components=3))
    save_beat_head(head, tmp_path, "a" * 64, {"note": 1})
    loaded, meta = load_beat_head(tmp_path, "a" * 64)
    r, f = torch.randn(3, 8), torch.randn(3, N_BEAT_FEATURES)
    assert torch.allclose(loaded(r, f), head(r, f))
    assert meta["classes"] == list(AAMI_CLASSES)
    with pytest.raises(EcgMoeError, match="trained on backbone aaaaaaaaaaaa, not on this one"):
        load_beat_head(tmp_path, "b" * 64)
    sidecar = tmp_path / "heads" / "beat_class.json"
    older = json.loads(sidecar.read_text())
    older["features"] = older["features"][:-1]  # a head from a version with other features
    sidecar.write_text(json.dumps(older))
    with pytest.raises(EcgMoeError, match="other beat features than this version"):
        load_beat_head(tmp_path, "a" * 64)
    bad = json.loads(sidecar.read_text())
    bad["features"] = list(BEAT_FEATURES)
    bad["tensors_hash"] = "0" * 64
    sidecar.write_text(json.dumps(bad))
    with pytest.raises(EcgMoeError, match="do not match the hash"):
        load_beat_head(tmp_path, "a" * 64)
    head.left[0, 0] = head.config.n_nodes  # a child past the tree's end, saved with its hash
    save_beat_head(head, tmp_path, "a" * 64)
    with pytest.raises(EcgMoeError, match="left holds an index outside"):
        load_beat_head(tmp_path, "a" * 64)
    shutil.rmtree(tmp_path / "heads")
    with pytest.raises(EcgMoeError, match="no beat head"):
        load_beat_head(tmp_path, "a" * 64)
