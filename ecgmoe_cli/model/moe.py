"""Top-k mixture of experts over the valid tokens of a padded batch, and its dense twin.

```
tokens (B, T, d) + mask (B, T)
   │ gather valid tokens ──▶ (N, d) ──router──▶ softmax (N, E) ──top-k──▶ gate, expert (N, k)
   │ sort the N·k (token, expert) pairs by expert; one matmul pair per expert on its slice
   │ weight by gate, index_add back per token, scatter to (B, T, d); padding stays 0
   └▶ stats: balance loss E·Σ f_e·P_e, per-record expert counts (B, E) for --explain
```
Padded tokens are never gathered, so they get no gradient and cost nothing. The loop runs over
experts (E of them), never over tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class MoEStats:
    """What one MoE layer saw in a forward: its balancing loss (with grad) and the routing."""

    balance_loss: Tensor  # () Switch-style E·Σ f_e·P_e; 1.0 when perfectly balanced
    counts: Tensor  # (B, E) int64: how many of each record's tokens went to each expert


def _valid_tokens(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Flatten (B, T, d) to the valid tokens (N, d), their flat index and their record index."""
    B, T, d = x.shape
    flat_idx = mask.reshape(-1).nonzero().squeeze(1)  # (N,)
    return x.reshape(B * T, d).index_select(0, flat_idx), flat_idx, flat_idx // T


def _scatter_back(y: Tensor, flat_idx: Tensor, shape: torch.Size) -> Tensor:
    out = y.new_zeros(shape[0] * shape[1], shape[2])
    return out.index_copy(0, flat_idx, y).reshape(shape)


class MoE(nn.Module):
    """E expert FFNs (d -> hidden -> d, GELU), each token sent to its top-k experts."""

    def __init__(self, d: int, n_experts: int, top_k: int, hidden: int) -> None:
        super().__init__()
        self.n_experts, self.top_k = n_experts, top_k
        self.router = nn.Linear(d, n_experts, bias=False)
        # Experts stored stacked (E, in, out) so a slice per expert is one addmm.
        self.w1 = nn.Parameter(torch.randn(n_experts, d, hidden) / math.sqrt(d))
        self.b1 = nn.Parameter(torch.zeros(n_experts, hidden))
        self.w2 = nn.Parameter(torch.randn(n_experts, hidden, d) / math.sqrt(hidden) * 0.5)
        self.b2 = nn.Parameter(torch.zeros(n_experts, d))
        nn.init.normal_(self.router.weight, std=0.02)

    def route(self, tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(N, d) -> gate (N, k) summing to 1, expert (N, k) distinct ids, router probs (N, E)."""
        probs = self.router(tokens).float().softmax(dim=-1)
        gate, expert = probs.topk(self.top_k, dim=-1)
        return (gate / gate.sum(-1, keepdim=True)).to(tokens.dtype), expert, probs

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, MoEStats]:
        """x (B, T, d), mask (B, T) bool (True = real token) -> y (B, T, d) zero on padding."""
        B, T, _ = x.shape
        tokens, flat_idx, record = _valid_tokens(x, mask)
        N, E, k = tokens.shape[0], self.n_experts, self.top_k
        if N == 0:
            zero = x.sum() * 0.0  # keeps the graph connected, no NaN
            return torch.zeros_like(x), MoEStats(zero, x.new_zeros(B, E, dtype=torch.long))
        gate, expert, probs = self.route(tokens)
        pair_expert = expert.reshape(-1)  # (N·k,)
        order = pair_expert.argsort(stable=True)
        pair_token = order // k  # token of each sorted pair
        counts = torch.bincount(pair_expert, minlength=E)
        xs = tokens.index_select(0, pair_token)  # (N·k, d) grouped by expert
        outs, start = [], 0
        for e, c in enumerate(counts.tolist()):
            if c:
                h = F.gelu(torch.addmm(self.b1[e], xs[start:start + c], self.w1[e]))
                outs.append(torch.addmm(self.b2[e], h, self.w2[e]))
                start += c
        ys = torch.cat(outs) * gate.reshape(-1)[order].unsqueeze(1)
        y = tokens.new_zeros(N, tokens.shape[1]).index_add(0, pair_token, ys)
        frac = counts.to(probs.dtype) / (N * k)  # f_e: share of routed pairs
        balance = E * (frac * probs.mean(0)).sum()
        per_record = torch.zeros(B * E, dtype=torch.long, device=x.device)
        per_record.index_add_(0, record.repeat_interleave(k) * E + pair_expert,
                              torch.ones_like(pair_expert))
        return _scatter_back(y, flat_idx, x.shape), MoEStats(balance, per_record.view(B, E))


class DenseFFN(nn.Module):
    """The dense baseline: one FFN as wide as all experts together, on the same valid tokens."""

    def __init__(self, d: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, hidden), nn.Linear(hidden, d)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, MoEStats]:
        tokens, flat_idx, _ = _valid_tokens(x, mask)
        y = self.fc2(F.gelu(self.fc1(tokens)))
        counts = x.new_zeros(x.shape[0], 0, dtype=torch.long)
        return _scatter_back(y, flat_idx, x.shape), MoEStats(x.sum() * 0.0, counts)


def make_ffn(d: int, n_experts: int, top_k: int, hidden: int, dense: bool) -> MoE | DenseFFN:
    """An MoE layer, or its dense twin of total width n_experts * hidden when `dense`."""
    return DenseFFN(d, n_experts * hidden) if dense else MoE(d, n_experts, top_k, hidden)
