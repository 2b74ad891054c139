"""The layers of the two MoE paths: rhythm (attention over beats and tokens, then an MoE) and
morphology (a per-beat MoE), and the time features that place a beat in its window."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ecgmoe_cli.model.config import EcgMoeConfig
from ecgmoe_cli.model.encoders import Attention
from ecgmoe_cli.model.moe import MoEStats, make_ffn

N_TIME_FREQS = 8  # Fourier features of a beat's position in the window


class RhythmBlock(nn.Module):
    """Sequence layer of the rhythm path: self-attention, then its own MoE."""

    def __init__(self, c: EcgMoeConfig) -> None:
        super().__init__()
        d = c.d_model
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = Attention(d, c.n_heads)
        self.ffn = make_ffn(d, c.n_experts, c.top_k, c.expert_hidden, c.dense_moe)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, MoEStats]:
        x = x + self.attn(self.ln1(x), mask)
        y, stats = self.ffn(self.ln2(x), mask)
        return x + y, stats


class MorphBlock(nn.Module):
    """Morphology path layer: a per-beat MoE FFN (beats are routed to shape experts)."""

    def __init__(self, c: EcgMoeConfig) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(c.d_model)
        self.ffn = make_ffn(c.d_model, c.n_experts, c.top_k, c.expert_hidden, c.dense_moe)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, MoEStats]:
        y, stats = self.ffn(self.ln(x), mask)
        return x + y, stats


def time_features(rpeaks: Tensor, W: int) -> Tensor:
    """(B, K) R-peak positions -> (B, K, 2F) sin/cos features of the beat's place in the window."""
    pos = rpeaks.clamp_min(0).float() / W
    freqs = torch.arange(1, N_TIME_FREQS + 1, device=rpeaks.device) * math.pi
    ang = pos.unsqueeze(-1) * freqs
    return torch.cat([ang.sin(), ang.cos()], -1)
