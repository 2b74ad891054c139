import pytest
import torch
from torch import nn

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.model.lora import LoRALinear, inject_lora, lora_layers, mark_only_lora_as_trainable


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def _randomise(layer: LoRALinear) -> None:
    with torch.no_grad():
        for p in layer.lora_B.values():
            p.normal_()


def test_fresh_adapter_equals_base_and_b_is_zero() -> None:
    net, x = _net(), torch.randn(5, 8)
    ref = net(x)
    inject_lora(net, ["0", "2"])
    for layer in lora_layers(net):
        layer.add_adapter("a", 4, 8.0)
        layer.active = "a"
        assert torch.count_nonzero(layer.lora_B["a"]) == 0
        assert layer.scaling("a") == 2.0
    assert torch.allclose(net(x), ref)


def test_merge_unmerge_agree_and_double_merge_is_noop() -> None:
    layer, x = LoRALinear(nn.Linear(8, 6)), torch.randn(7, 8)
    layer.add_adapter("a", 3, 6.0)
    _randomise(layer)
    base = layer(x)
    layer.active = "a"
    with_adapter = layer(x)
    assert not torch.allclose(base, with_adapter, atol=1e-3)
    w0 = layer.base.weight.clone()
    layer.merge("a")
    assert torch.allclose(layer(x), with_adapter, atol=1e-4)
    assert torch.allclose(layer.base(x), with_adapter, atol=1e-4)  # really folded into W
    merged_w = layer.base.weight.clone()
    with pytest.warns(UserWarning):
        layer.merge("a")
    assert torch.equal(layer.base.weight, merged_w)
    layer.unmerge()
    assert torch.allclose(layer.base.weight, w0, atol=1e-6)
    assert torch.allclose(layer(x), with_adapter, atol=1e-4)
    with pytest.warns(UserWarning):
        layer.unmerge()


def test_safe_merge_refuses_non_finite() -> None:
    layer = LoRALinear(nn.Linear(4, 4))
    layer.add_adapter("a", 2, 4.0)
    with torch.no_grad():
        layer.lora_B["a"].fill_(float("inf"))
    w0 = layer.base.weight.clone()
    with pytest.raises(EcgMoeError, match="non-finite"):
        layer.merge("a")
    assert torch.equal(layer.base.weight, w0) and layer.merged is None


def test_forward_many_equals_each_adapter_alone_even_when_one_is_merged() -> None:
    layer, x = LoRALinear(nn.Linear(8, 6)), torch.randn(5, 8)
    for name, r in [("a", 2), ("b", 4), ("off", 0)]:
        layer.add_adapter(name, r, 4.0)
    _randomise(layer)
    names = ["a", "b", "off"]
    alone = []
    for n in names:
        layer.active = n
        alone.append(layer(x))
    for merged in (None, "b"):
        if merged:
            layer.merge(merged)
        shared = layer.forward_many(x, names)  # (B, i) input
        stacked = layer.forward_many(x.expand(3, *x.shape), names)  # (T, B, i) input
        for i in range(3):
            assert torch.allclose(shared[i], alone[i], atol=1e-5)
            assert torch.allclose(stacked[i], alone[i], atol=1e-5)


def test_rank_zero_is_off_and_has_no_tensors() -> None:
    layer = LoRALinear(nn.Linear(4, 4))
    layer.add_adapter("z", 0, 1.0)
    assert "z" not in layer.lora_A and layer.scaling("z") == 0.0
    layer.active = "z"
    x = torch.randn(3, 4)
    assert torch.equal(layer(x), layer.base(x))


def test_inject_names_the_targets_when_nothing_matches() -> None:
    with pytest.raises(EcgMoeError, match="nope"):
        inject_lora(_net(), ["nope"])
    net = _net()
    assert inject_lora(net, ["2"]) == ["2"]
    assert isinstance(net[2], LoRALinear) and isinstance(net[0], nn.Linear)
    assert not net[2].base.weight.requires_grad  # peft: the base is frozen


def test_mark_only_lora_as_trainable() -> None:
    net = _net()
    inject_lora(net, ["0", "2"])
    for layer in lora_layers(net):
        layer.add_adapter("a", 2, 2.0)
        layer.add_adapter("b", 2, 2.0)
    mark_only_lora_as_trainable(net, ["a"])
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A.a" in n or ".lora_B.a" in n for n in trainable)
    assert len(trainable) == 4
