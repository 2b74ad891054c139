import torch

from ecgmoe_cli.model.moe import DenseFFN, MoE


def _moe() -> MoE:
    torch.manual_seed(0)
    return MoE(d=16, n_experts=6, top_k=2, hidden=24)


def test_routes_exactly_k_distinct_experts_per_token() -> None:
    moe, x = _moe(), torch.randn(40, 16)
    gate, expert, probs = moe.route(x)
    assert expert.shape == (40, 2)
    assert (expert[:, 0] != expert[:, 1]).all()
    assert torch.allclose(gate.sum(-1), torch.ones(40))
    # the chosen experts are the two most probable ones
    assert torch.equal(expert.sort(-1).values, probs.topk(2, -1).indices.sort(-1).values)


def test_forward_matches_a_per_token_reference_and_counts_routing() -> None:
    moe = _moe()
    x, mask = torch.randn(3, 5, 16), torch.rand(3, 5) > 0.3
    y, stats = moe(x, mask)
    for b in range(3):
        for t in range(5):
            if not mask[b, t]:
                assert torch.count_nonzero(y[b, t]) == 0
                continue
            gate, expert, _ = moe.route(x[b, t].unsqueeze(0))
            ref = sum(g * (torch.nn.functional.gelu(x[b, t] @ moe.w1[e] + moe.b1[e]) @ moe.w2[e]
                           + moe.b2[e]) for g, e in zip(gate[0], expert[0]))
            assert torch.allclose(y[b, t], ref, atol=1e-5)
    assert torch.equal(stats.counts.sum(1), mask.sum(1) * 2)  # k experts per real token
    assert torch.isfinite(stats.balance_loss) and stats.balance_loss >= 1.0 - 1e-5


def test_masked_tokens_get_no_gradient() -> None:
    moe = _moe()
    x = torch.randn(2, 6, 16, requires_grad=True)
    mask = torch.tensor([[1, 1, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0]], dtype=torch.bool)
    y, stats = moe(x, mask)
    (y.pow(2).sum() + stats.balance_loss).backward()
    assert torch.count_nonzero(x.grad[~mask]) == 0
    assert torch.count_nonzero(x.grad[mask].abs().sum(-1)) == mask.sum()


def test_no_valid_token_gives_zeros_and_finite_loss() -> None:
    moe = _moe()
    y, stats = moe(torch.randn(2, 4, 16), torch.zeros(2, 4, dtype=torch.bool))
    assert torch.count_nonzero(y) == 0 and torch.isfinite(stats.balance_loss)
    assert stats.counts.shape == (2, 6) and stats.counts.sum() == 0


def test_dense_twin_touches_only_valid_tokens() -> None:
    ffn = DenseFFN(16, 6 * 24)
    x, mask = torch.randn(2, 4, 16), torch.tensor([[1, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.bool)
    y, _ = ffn(x, mask)
    assert torch.count_nonzero(y[~mask]) == 0
    assert torch.allclose(y[mask], ffn.fc2(torch.nn.functional.gelu(ffn.fc1(x[mask]))), atol=1e-6)
