import dataclasses

import pytest
import torch

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.model.baselines import PerTaskModels, ResNet1d, ablation, dense_multitask
from ecgmoe_cli.model.batch import example_batch
from ecgmoe_cli.model.config import EcgMoeConfig, get_config
from ecgmoe_cli.model.ecgmoe import EcgMoe
from ecgmoe_cli.model.lora import lora_layers
from ecgmoe_cli.signal.spec import PreprocessSpec
from ecgmoe_cli.tasks import TASKS

TINY = get_config("tiny")
SOME = [TASKS[n] for n in ("rhythm", "age", "sex", "arrhythmia")]


def _model(tasks=SOME, config=TINY) -> EcgMoe:
    torch.manual_seed(0)
    return EcgMoe(config, tasks)


def _randomise_adapters(model: EcgMoe) -> None:
    with torch.no_grad():
        for layer in lora_layers(model):
            for p in layer.lora_B.values():
                p.normal_(std=0.5)


def _targets(B: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"rhythm": (torch.rand(B, 4, generator=g) > 0.5).float(),
            "age": torch.rand(B, generator=g) * 60 + 20,
            "sex": (torch.rand(B, 1, generator=g) > 0.5).float(),
            "arrhythmia": torch.randint(0, 12, (B,), generator=g).float()}


def test_config_checks_ranges_and_follows_the_spec() -> None:
    with pytest.raises(EcgMoeError, match="top_k"):
        dataclasses.replace(TINY, top_k=9)
    with pytest.raises(EcgMoeError, match="unknown model config"):
        get_config("huge")
    spec = PreprocessSpec(fs=100.0, window_s=5.0, beat_pre_s=0.2, max_beats=16)
    c = EcgMoeConfig.from_spec("tiny", spec)
    assert (c.window_samples, c.beat_pre, c.beat_samples, c.max_beats) == (500, 20, 65, 16)
    assert EcgMoeConfig.from_dict(c.to_dict()) == c
    model = EcgMoe(c, SOME)
    out, _ = model(example_batch(c, 2))
    assert out["arrhythmia"].shape == (2, 12)


def test_forward_shapes_and_batch_check() -> None:
    model = _model()
    out, loss = model(example_batch(TINY, 3))
    assert loss is None
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "rhythm": (3, 4), "age": (3, 1), "sex": (3, 1), "arrhythmia": (3, 12)}
    assert set(model.aux["routing"]) == {"morph.0", "rhythm.0"}
    assert model.aux["routing"]["morph.0"].sum(1).tolist() == [12 * TINY.top_k] * 3
    bad = example_batch(dataclasses.replace(TINY, window_samples=1000), 1)
    with pytest.raises(EcgMoeError, match="spec"):
        model(bad)


def test_predict_returns_probabilities_classes_and_values() -> None:
    model = _model().eval()
    model.heads["sex"].temperature = 2.0
    b = example_batch(TINY, 4)
    raw, _ = model(b)
    pred = model.predict(b)
    assert torch.allclose(pred["sex"], torch.sigmoid(raw["sex"] / 2.0))
    assert torch.allclose(pred["arrhythmia"].sum(-1), torch.ones(4))
    head = model.heads["age"]
    assert torch.allclose(pred["age"], raw["age"] * head.target_scale + head.target_mean)


def test_no_beats_and_single_lead_are_finite() -> None:
    model = _model()
    for b in (example_batch(TINY, 2, n_beats=0), example_batch(TINY, 2, n_leads=1),
              example_batch(TINY, 2, n_beats=0, n_leads=1)):
        b["n_valid"][1] = 300  # mostly padding
        out, loss = model(b, _targets(2))
        assert all(torch.isfinite(v).all() for v in out.values())
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        assert torch.isfinite(model.ssl_loss(b))
        model.zero_grad()


def test_padded_beats_get_no_gradient_and_do_not_change_outputs() -> None:
    model = _model().eval()
    b = example_batch(TINY, 2, n_beats=5)
    b["rr"].requires_grad_(True)
    out, loss = model(b, _targets(2))
    loss.backward()
    assert torch.count_nonzero(b["rr"].grad[:, 5:]) == 0
    assert torch.count_nonzero(b["rr"].grad[:, :5]) > 0
    b2 = {k: v.detach().clone() for k, v in b.items()}
    b2["rr"][:, 5:] = 7.0  # garbage in the padding changes nothing
    out2, _ = model(b2)
    assert all(torch.allclose(out[k], out2[k], atol=1e-6) for k in out)


def test_batched_adapters_equal_each_adapter_alone_and_merge_agrees() -> None:
    model = _model().eval()
    _randomise_adapters(model)
    b = example_batch(TINY, 3)
    feats = model.encode(b)
    together = model.decode(feats)
    for name in model.tasks:
        alone = model.decode(feats, [name])[name]
        assert torch.allclose(together[name], alone, atol=1e-5)
    model.merge_adapter("age")
    merged = model.decode(feats)
    for name in model.tasks:
        assert torch.allclose(merged[name], together[name], atol=1e-4)
    model.unmerge_adapter()
    assert torch.allclose(model.decode(feats)["sex"], together["sex"], atol=1e-4)


def test_fresh_adapter_equals_the_base_model() -> None:
    model = _model()
    b = example_batch(TINY, 2)
    before = model.decode(model.encode(b), ["sex"])["sex"]
    base = model.fusion(*(getattr(model.encode(b), k) for k in ("morphology", "rhythm",
                                                                 "temporal")), ["sex"])
    for layer in lora_layers(model):
        layer.remove_adapter("sex")
        layer.add_adapter("sex", 0, 1.0)  # rank 0: the plain fusion base
    assert torch.allclose(model.fusion(*(getattr(model.encode(b), k) for k in (
        "morphology", "rhythm", "temporal")), ["sex"]), base, atol=1e-6)
    assert torch.allclose(model.decode(model.encode(b), ["sex"])["sex"], before, atol=1e-6)


def test_finetune_parameters_are_only_the_task_adapter_and_head() -> None:
    model = _model()
    params = model.trainable_parameters("sex")
    names = {n for n, p in model.named_parameters() if any(p is q for q in params)}
    assert names and all(".sex" in n or n.startswith("heads.sex.") for n in names)
    model.mark_trainable("sex")
    _, loss = model(example_batch(TINY, 2), _targets(2))
    loss.backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None}
    assert grads == names


def test_task_weights_give_a_weighted_mean_of_the_task_losses() -> None:
    from ecgmoe_cli.model.heads import task_loss

    model = _model().eval()
    b, tg = example_batch(TINY, 3), _targets(3)
    out, plain = model(b, tg)
    _, weighted = model(b, tg, task_weights={"sex": 3.0, "age": 0.5})
    parts = {n: task_loss(model.heads[n], out[n], y) for n, y in tg.items()}
    balance = model.config.balance_coef * model.aux["balance_loss"]
    w = {"rhythm": 1.0, "age": 0.5, "sex": 3.0, "arrhythmia": 1.0}
    expect = sum(w[n] * v for n, v in parts.items()) / sum(w.values()) + balance
    assert torch.allclose(weighted, expect, atol=1e-6)
    assert torch.allclose(plain, torch.stack(list(parts.values())).mean() + balance, atol=1e-6)
    assert not torch.allclose(weighted, plain)


def test_adapter_is_under_two_percent_of_base_backbone() -> None:
    model = EcgMoe(get_config("base"), [TASKS["arrhythmia"]])
    state = model.state_dict()
    adapter = sum(state[k].numel() for k in model.adapter_keys("arrhythmia"))
    backbone = sum(state[k].numel() for k in model.backbone_keys())
    assert 0 < adapter < 0.02 * backbone


def test_a_few_steps_lower_the_loss_and_ssl_trains() -> None:
    small = EcgMoeConfig.from_spec("tiny", PreprocessSpec(fs=100.0, window_s=5.0, max_beats=8))
    model = _model(config=small)
    b, y = example_batch(small, 8, n_beats=6, seed=3), _targets(8)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        _, loss = model(b, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    g = torch.Generator().manual_seed(0)
    first = model.ssl_loss(b, torch.Generator().manual_seed(0))
    for _ in range(5):
        loss = model.ssl_loss(b, g.manual_seed(0))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert model.ssl_loss(b, torch.Generator().manual_seed(0)) < first


def test_the_masked_beat_pass_leaves_batchnorm_running_statistics_alone() -> None:
    """Inference normalises with the running statistics: they must come from whole signals,
    not from the SSL pass's signals with beats blanked out."""
    model = _model().train()
    b = example_batch(model.config, 8, n_beats=6, seed=3)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert norms
    before = [(m.running_mean.clone(), m.running_var.clone()) for m in norms]
    model.ssl_loss(b, torch.Generator().manual_seed(0)).backward()
    for m, (mean, var) in zip(norms, before):
        assert torch.equal(m.running_mean, mean) and torch.equal(m.running_var, var)
        assert m.momentum == 0.1  # restored
    model(b, _targets(8))
    assert not torch.equal(norms[0].running_var, before[0][1])


def test_baselines_share_the_batch_and_outputs() -> None:
    b, y = example_batch(TINY, 2), _targets(2)
    dense = dense_multitask(TINY, SOME)
    assert dense.aux == {}
    out, loss = dense(b, y)
    assert out["arrhythmia"].shape == (2, 12) and torch.isfinite(loss)
    assert not any("router" in n for n, _ in dense.named_parameters())
    widths = {m.ffn.fc1.out_features for m in [*dense.morph, *dense.rhythm]}
    assert widths == {TINY.n_experts * TINY.expert_hidden}  # the same total width
    per = PerTaskModels.fresh(TINY, SOME)
    out, loss = per(b, y)
    assert set(out) == {t.name for t in SOME} and torch.isfinite(loss)
    assert per.heads["age"] is per.models["age"].heads["age"]  # scaling/predict reach each head
    for name in ("no_morphology", "no_rhythm"):
        m = EcgMoe(ablation(TINY, name), SOME)
        out, loss = m(b, y)
        assert torch.isfinite(loss)
        assert ("morph.0" in m.aux["routing"]) == (name != "no_morphology")
    out, loss = ResNet1d(SOME, width=8)(b, y)
    assert out["rhythm"].shape == (2, 4) and torch.isfinite(loss)


def test_rr_interval_head_starts_from_the_measured_rr_and_learns_a_residual() -> None:
    """An untrained anchored head predicts the detected mean RR (gaps left out, as
    heart_rate_bpm); no beats -> the prior mean; residual_weight scales the correction."""
    model = _model([TASKS["rr_interval"], TASKS["age"]]).eval()
    head = model.heads["rr_interval"]
    assert head.anchor == "mean_rr_ms" and model.heads["age"].anchor == ""
    with torch.no_grad():
        head.linear.weight.zero_()
        head.linear.bias.zero_()
    b = example_batch(TINY, 4, n_beats=6)
    b["rr"][0, :6, 0] = torch.tensor([9.0, 0.6, 0.7, 0.9, 3.0, 0.8])  # beat 0's RR is borrowed
    b["rr"][2, 2:] = 0.0
    b["rpeaks"][2, 1:] = -1  # one beat: no interval measured
    b["rr"][3, :6, 0] = torch.tensor([0.5, 0.5, 1.0, 0.5, 1.0, 0.5])  # bigeminy
    pred = model.predict(b)["rr_interval"][:, 0]
    assert pred[0].item() == pytest.approx(750.0, abs=1e-3)  # 3.0 s > 3 x median 0.8: a gap
    assert pred[1].item() == pytest.approx(800.0, abs=1e-3)  # all 0.8 s
    assert pred[2].item() == pytest.approx(head.target_mean)
    assert pred[3].item() == pytest.approx(700.0, abs=1e-3)  # every beat, not one kind's 500
    with torch.no_grad():
        head.linear.bias.fill_(0.1)  # the residual is added in scaled units
    assert model.predict(b)["rr_interval"][1, 0].item() == pytest.approx(
        800.0 + 0.1 * head.target_scale, abs=1e-3)
    head.set_metadata({"residual_weight": 0.25})
    assert model.predict(b)["rr_interval"][1, 0].item() == pytest.approx(
        800.0 + 0.025 * head.target_scale, abs=1e-3)
    meta = head.metadata()
    assert meta["anchor"] == "mean_rr_ms" and meta["residual_weight"] == 0.25
    head.set_metadata({"anchor": "median_rr_ms", "residual_weight": 0.0})  # an older adapter's
    assert model.predict(b)["rr_interval"][3, 0].item() == pytest.approx(500.0, abs=1e-3)
    with pytest.raises(EcgMoeError, match="anchor"):
        model.heads["age"].set_metadata({**model.heads["age"].metadata(), "anchor": "age_guess"})
    for bad in (1.5, -0.1, float("nan"), "1"):
        with pytest.raises(EcgMoeError, match="residual_weight"):
            head.set_metadata({"residual_weight": bad})


def test_batchnorm_folded_for_inference_gives_the_same_outputs_and_cannot_be_saved(
        tmp_path) -> None:
    from ecgmoe_cli.model.encoders import fold_batchnorm
    from ecgmoe_cli.weights.store import save_backbone

    model = _model()
    with torch.no_grad():  # non-trivial running statistics, as after training
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_(std=0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_(1.0, 0.2)
                m.bias.normal_(std=0.2)
    model.eval()
    b = example_batch(TINY, 4)
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(_model().train())
    before = model.predict(b)
    fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules())
    after = model.predict(b)
    for t in before:
        torch.testing.assert_close(after[t], before[t], rtol=1e-4, atol=1e-4)
    with pytest.raises(EcgMoeError, match="folded"):
        save_backbone(model, PreprocessSpec(), tmp_path)


def test_row_layout_gives_the_training_layout_outputs() -> None:
    """CPU inference runs the conv stacks channels-last (B, C, 1, W), the beat encoder on a
    bucketed beat count; training runs (B, C, W): both give the same outputs, folded or not."""
    from ecgmoe_cli.model.encoders import bucketed, fold_batchnorm

    assert [bucketed(n) for n in (1, 12, 16, 17, 100, 770, 832)] == [1, 12, 16, 18, 104, 832, 832]
    model = _model().eval()
    b = example_batch(TINY, 5, n_beats=7)  # 35 beats: the beat encoder runs 36
    outs, _ = model(b)  # gradients on: the training layout
    before = {t: model.heads[t].predict(v).detach() for t, v in outs.items()}
    seen = []
    for conv in (model.temporal.stem[0][0], model.beat_encoder.net[0][0]):
        conv.register_forward_pre_hook(lambda _m, x: seen.append(x[0].shape))
    for m in (model, fold_batchnorm(model)):
        seen.clear()
        after = m.predict(b)
        assert [len(s) for s in seen] == [4, 4]  # inference took the channels-last layout
        assert seen[1][0] == 36  # bucketed(35): a zero beat added, then dropped
        for t in before:
            torch.testing.assert_close(after[t], before[t], rtol=1e-4, atol=1e-4)


def test_large_cpu_batches_go_through_the_encoders_in_slices(monkeypatch) -> None:
    """At CPU inference a batch over CPU_WINDOWS windows / CPU_BEATS beats runs the encoders
    slice by slice (bounded memory); the outputs are those of the whole batch."""
    from ecgmoe_cli.model import encoders

    model = _model().eval()
    b = example_batch(TINY, 5, n_beats=7)
    whole = model.predict(b)
    seen = []
    for conv in (model.temporal.stem[0][0], model.beat_encoder.net[0][0]):
        conv.register_forward_pre_hook(lambda _m, x: seen.append(x[0].shape[0]))
    monkeypatch.setattr(encoders, "CPU_WINDOWS", 2)
    monkeypatch.setattr(encoders, "CPU_BEATS", 16)
    sliced = model.predict(b)
    assert seen == [2, 2, 1, 16, 16, 3]  # windows 2 + 2 + 1; beats 16 + 16 + 3 (35)
    for t in whole:
        torch.testing.assert_close(sliced[t], whole[t], rtol=1e-5, atol=1e-5)
