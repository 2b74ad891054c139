"""The per-beat head: AAMI EC57 beat classes from the frozen backbone's beat tokens and RR context.

```
beat tokens (B, K, d) ───────────────────────LayerNorm─┐
  └─ minus the window's median token ─────────LayerNorm─┤
rr (B, K, 4) ─rr_context─▶ (B, K, N_RR) ─standardised──┴─concat─▶ Linear ─GELU─▶ Linear
                                                                      ─▶ logits (B, K, 5)
```
The morphology path's tokens say what a beat looks like; the same token less the window's
median one says how it differs from the patient's dominant beat (a bundle-branch block makes
every beat wide, a PVC only differs from its neighbours). Whether a beat is premature (S) is
mostly timing, which the tokens see only faintly: hence the RR context, relative to the beat's
own neighbourhood (the 9-beat local mean) and to the window's median, so that a patient's
resting rate does not read as prematurity (de Chazal 2004 normalises per record the same way).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ecgmoe_cli.tasks import AAMI_CLASSES

N_RR = 9  # rr_context features per beat


@dataclass(frozen=True)
class BeatHeadConfig:
    """Sizes of the beat head; saved in its JSON sidecar."""

    d_model: int
    """Width of the backbone's beat tokens."""
    hidden: int = 64
    """Hidden width of the MLP."""

    def __post_init__(self) -> None:
        if self.d_model < 1 or self.hidden < 1:
            raise ValueError(f"beat head sizes must be >= 1, got {self}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _log_ratio(a: Tensor, b: Tensor) -> Tensor:
    return torch.log(a.clamp_min(1e-3) / b.clamp_min(1e-3)).clamp(-3.0, 3.0)


def rr_context(rr: Tensor, mask: Tensor) -> Tensor:
    """(B, K, 4) RR features in seconds [pre, post, local mean, pre / local] and the beat mask
    (B, K) -> (B, K, N_RR): the intervals, and log ratios to the local mean and to the median
    pre-RR of the window's beats (0 where a window has fewer than two beats)."""
    pre, post, local = rr[..., 0], rr[..., 1], rr[..., 2]
    known = mask & (pre > 0)
    median = torch.where(known, pre, torch.full_like(pre, float("nan"))).nanmedian(dim=1,
                                                                                   keepdim=True)
    med = torch.nan_to_num(median.values, nan=0.0).expand_as(pre)
    feats = torch.stack([pre, post, local,
                         _log_ratio(pre, local), _log_ratio(post, local), _log_ratio(pre, post),
                         _log_ratio(pre, med), _log_ratio(post, med), _log_ratio(local, med)], -1)
    return torch.where(known.unsqueeze(-1), feats, torch.zeros_like(feats))


def window_relative(tokens: Tensor, mask: Tensor) -> Tensor:
    """(B, K, d) tokens less their window's median token over its beats (0 at padding)."""
    m = mask.unsqueeze(-1)
    median = torch.where(m, tokens, torch.full_like(tokens, float("nan"))).nanmedian(
        dim=1, keepdim=True).values
    return torch.where(m, tokens - torch.nan_to_num(median, nan=0.0), torch.zeros_like(tokens))


class BeatHead(nn.Module):
    """A small MLP over each beat's token and its RR context: (B, K) beats -> (B, K, 5)."""

    def __init__(self, config: BeatHeadConfig) -> None:
        super().__init__()
        self.config = config
        self.ln = nn.LayerNorm(config.d_model)
        self.ln_relative = nn.LayerNorm(config.d_model)
        # the context standardised by its training-set statistics (set by the trainer): log
        # ratios of a few tenths would otherwise weigh little beside the normalised tokens
        self.register_buffer("context_mean", torch.zeros(N_RR))
        self.register_buffer("context_std", torch.ones(N_RR))
        self.mlp = nn.Sequential(nn.Linear(2 * config.d_model + N_RR, config.hidden), nn.GELU(),
                                 nn.Linear(config.hidden, len(AAMI_CLASSES)))

    def forward(self, tokens: Tensor, relative: Tensor, context: Tensor) -> Tensor:
        """Logits (..., 5) from tokens (..., d), their `window_relative` (..., d) and
        `rr_context` (..., N_RR): training takes the beats of many windows flattened,
        inference whole windows."""
        ctx = (context - self.context_mean) / self.context_std
        return self.mlp(torch.cat([self.ln(tokens), self.ln_relative(relative), ctx], -1))

    @torch.no_grad()
    def predict(self, tokens: Tensor, rr: Tensor, mask: Tensor) -> Tensor:
        """Class probabilities (B, K, 5) of whole windows; rows of padded beats are meaningless."""
        return self(tokens, window_relative(tokens, mask), rr_context(rr, mask)).softmax(-1)
