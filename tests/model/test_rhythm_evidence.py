"""RR evidence on the rhythm head's afib label and the arrhythmia head's AF classes: the RR
statistics, the fused logit, its JSON."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.model.heads import TaskHead, group_log_odds
from ecgmoe_cli.model.rhythm_evidence import (
    N_RR_FEATURES,
    RR_FEATURES,
    RhythmEvidence,
    rr_irregularity,
)
from ecgmoe_cli.tasks import TASKS, Task

F = {name: i for i, name in enumerate(RR_FEATURES)}


def _features(*series: list[float], k: int = 24) -> np.ndarray:
    """Rows of pre-RR seconds, each padded to k with junk where the beat mask is off."""
    rr = np.full((len(series), k), 7.0, np.float32)
    mask = np.zeros((len(series), k), bool)
    for i, s in enumerate(series):
        rr[i, :len(s)], mask[i, :len(s)] = s, True
    return rr_irregularity(torch.from_numpy(rr), torch.from_numpy(mask)).numpy()


def test_regular_bigeminy_and_irregular_rhythms_are_told_apart():
    rng = np.random.default_rng(0)
    regular = [0.8] * 12
    bigeminy = [0.5, 1.0] * 6
    af = list(rng.uniform(0.4, 1.1, 14))
    f = _features(regular, bigeminy, af)
    assert f.shape == (3, N_RR_FEATURES)
    assert f[0, F["nrmssd"]] == pytest.approx(0.0, abs=1e-6)
    assert f[0, F["near_median"]] == 1.0 and f[0, F["two_clusters"]] == 1.0
    assert f[0, F["log_median_rr"]] == pytest.approx(np.log(0.8), abs=1e-6)
    # bigeminy: two tight levels, every difference reverses the last, every pair is ectopic
    assert f[1, F["two_clusters"]] == 1.0 and f[1, F["near_median"]] < 0.6
    assert f[1, F["step_autocorr"]] < -0.9 and f[1, F["sinus_share"]] == 0.0
    # AF: no level holds most intervals, steps are big and do not alternate
    assert f[2, F["two_clusters"]] < 0.7 and f[2, F["near_median"]] < 0.4
    assert f[2, F["big_steps"]] > 0.5 and f[2, F["step_autocorr"]] > -0.9
    assert f[2, F["nrmssd"]] > 5 * f[0, F["nrmssd"]] + 0.1


def test_an_isolated_ectopic_pair_is_left_out_of_the_sinus_irregularity():
    f = _features([0.8] * 5 + [0.5, 1.1] + [0.8] * 5)
    assert f[0, F["nrmssd"]] > 0.2
    assert f[0, F["nrmssd_sinus"]] == pytest.approx(0.0, abs=1e-6)
    assert f[0, F["sinus_share"]] == pytest.approx(10 / 12)


def test_statistics_ignore_padding_and_need_four_intervals():
    a = _features([0.7, 0.9, 0.6, 1.0, 0.8], k=8)
    b = _features([0.7, 0.9, 0.6, 1.0, 0.8], k=32)
    assert np.allclose(a, b, atol=1e-6)
    assert not np.isnan(_features([0.8, 0.8, 0.8], [], [0.9] * 24)).any()
    assert (_features([0.8, 0.8, 0.8], [])[:, :] == 0).all()


def _evidence(**change: object) -> RhythmEvidence:
    base = dict(label="afib", mean=(0.0,) * N_RR_FEATURES, scale=(1.0,) * N_RR_FEATURES,
                coef=(0.0,) * (N_RR_FEATURES - 1) + (2.0,), intercept=-1.0, weight=0.5,
                rr_weight=1.5, bias=0.25)
    return RhythmEvidence(**(base | change))  # type: ignore[arg-type]


def test_only_the_evidence_label_is_fused_and_by_the_stated_formula():
    head = TaskHead(TASKS["rhythm"], 4)
    head.temperature = 2.0
    head.evidence = _evidence()
    raw = torch.tensor([[1.0, -2.0, 0.5, 3.0], [-1.0, 0.0, 0.0, 0.0]])
    rr = torch.zeros(2, N_RR_FEATURES)
    rr[:, -1] = torch.tensor([0.0, 1.0])
    out = head.with_evidence(raw, rr)
    j = TASKS["rhythm"].labels.index("afib")
    rr_logit = 2.0 * rr[:, -1] - 1.0
    want = (0.5 * raw[:, j] / 2.0 + 1.5 * rr_logit + 0.25) * 2.0
    assert torch.allclose(out[:, j], want)
    others = [i for i in range(4) if i != j]
    assert torch.equal(out[:, others], raw[:, others])
    assert torch.equal(head.with_evidence(raw, None), raw)  # no statistics, no change


def test_evidence_round_trips_through_the_head_metadata_and_bad_json_is_refused():
    head = TaskHead(TASKS["rhythm"], 4)
    head.evidence = _evidence()
    again = TaskHead(TASKS["rhythm"], 4)
    again.set_metadata(head.metadata())
    assert again.evidence == head.evidence
    for bad in ({"label": "afib"}, "yes", head.metadata()["evidence"] | {"coef": [1.0]},
                head.metadata()["evidence"] | {"features": ["cv"]},
                head.metadata()["evidence"] | {"scale": [0.0] * N_RR_FEATURES},
                head.metadata()["evidence"] | {"label": "flutter"}):
        with pytest.raises(EcgMoeError, match="evidence"):
            TaskHead(TASKS["rhythm"], 4).set_metadata({"evidence": bad})
    with pytest.raises(EcgMoeError, match="evidence"):  # a task without the label
        TaskHead(TASKS["sex"], 4).set_metadata({"evidence": head.metadata()["evidence"]})


def test_a_multiclass_head_moves_its_af_classes_together_by_the_fused_log_odds():
    head = TaskHead(TASKS["arrhythmia"], 4)
    head.temperature = 1.5
    head.evidence = _evidence()
    group = head.evidence_group("afib")
    labels = TASKS["arrhythmia"].labels
    assert [c for c, g in zip(labels, group.tolist(), strict=True) if g] == ["afib", "afib_rvr"]
    raw = torch.randn(3, len(labels), generator=torch.Generator().manual_seed(0))
    rr = torch.zeros(3, N_RR_FEATURES)
    rr[:, -1] = torch.tensor([0.0, 1.0, 2.0])
    out = head.with_evidence(raw, rr)
    before = group_log_odds(raw / 1.5, group)
    want = 0.5 * before + 1.5 * (2.0 * rr[:, -1] - 1.0) + 0.25
    assert torch.allclose(group_log_odds(out / 1.5, group), want, atol=1e-5)
    p, q = (raw / 1.5).softmax(1), (out / 1.5).softmax(1)
    for side in (group, ~group):  # the split within AF and within the rest is the head's
        assert torch.allclose(p[:, side] / p[:, side].sum(1, keepdim=True),
                              q[:, side] / q[:, side].sum(1, keepdim=True), atol=1e-6)
    again = TaskHead(TASKS["arrhythmia"], 4)
    again.set_metadata(head.metadata())
    assert again.evidence == head.evidence
    every = TaskHead(Task("af_kinds", "multiclass", ("afib", "afib_rvr")), 4)
    with pytest.raises(EcgMoeError, match="leave some class out"):
        every.set_metadata({"evidence": head.metadata()["evidence"]})
