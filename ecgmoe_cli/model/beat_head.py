"""The per-beat head: AAMI EC57 beat classes from each beat's features relative to its own
patient, and the frozen backbone's beat tokens.

```
window signal, rpeaks, rr ─signal/beat_features─▶ (B, K, F) ─standardised─┐
beat tokens (B, K, d) ─minus the window's median token─LayerNorm──────────┴─concat─▶
    Linear ─GELU─▶ Linear ─GELU─▶ Linear ─▶ logits (B, K, 5)
```
Inter-patient, what carries is how a beat differs from the patient's dominant beat (V) and
how early it comes for the patient's rate (S): `beat_features` measures both against the
window's own beats. The tokens enter only as a difference from the window's median token:
their absolute value says which patient, and a head that learns patients does not generalise
to new ones. Leave-one-record-out on MIT-BIH DS1, adding the absolute tokens (or the window's
median token) made record 207, whose bundle-branch blocks widen every beat, 790-1008 V calls
against 210 annotated V beats; without them, 114.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ecgmoe_cli.signal.beat_features import N_BEAT_FEATURES, beat_features
from ecgmoe_cli.tasks import AAMI_CLASSES


@dataclass(frozen=True)
class BeatHeadConfig:
    """Sizes of the beat head; saved in its JSON sidecar."""

    d_model: int
    """Width of the backbone's beat tokens."""
    hidden: int = 64
    """Hidden width of the MLP."""
    fs: float = 250.0
    """Sampling rate (Hz) of the windows the features are computed on: the backbone's."""

    def __post_init__(self) -> None:
        if self.d_model < 1 or self.hidden < 1:
            raise ValueError(f"beat head sizes must be >= 1, got {self}")
        if not self.fs > 0:
            raise ValueError(f"beat head fs must be > 0, got {self.fs}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def window_relative(tokens: Tensor, mask: Tensor) -> Tensor:
    """(B, K, d) tokens less their window's median token over its beats (0 at padding)."""
    m = mask.unsqueeze(-1)
    median = torch.where(m, tokens, torch.full_like(tokens, float("nan"))).nanmedian(
        dim=1, keepdim=True).values
    return torch.where(m, tokens - torch.nan_to_num(median, nan=0.0), torch.zeros_like(tokens))


class BeatHead(nn.Module):
    """A small MLP over each beat's features and relative token: (B, K) beats -> (B, K, 5)."""

    def __init__(self, config: BeatHeadConfig) -> None:
        super().__init__()
        self.config = config
        self.ln_relative = nn.LayerNorm(config.d_model)
        # features standardised by their training-set statistics (set by the trainer): log
        # ratios of a few tenths would otherwise weigh little beside the normalised tokens
        self.register_buffer("feature_mean", torch.zeros(N_BEAT_FEATURES))
        self.register_buffer("feature_std", torch.ones(N_BEAT_FEATURES))
        h = config.hidden
        self.mlp = nn.Sequential(nn.Linear(config.d_model + N_BEAT_FEATURES, h), nn.GELU(),
                                 nn.Linear(h, h), nn.GELU(), nn.Linear(h, len(AAMI_CLASSES)))

    def forward(self, relative: Tensor, features: Tensor) -> Tensor:
        """Logits (..., 5) from `window_relative` tokens (..., d) and `beat_features`
        (..., F): training takes the beats of many windows flattened, inference whole
        windows."""
        f = (features - self.feature_mean) / self.feature_std
        return self.mlp(torch.cat([self.ln_relative(relative), f], -1))

    @torch.no_grad()
    def predict(self, tokens: Tensor, windows: dict[str, np.ndarray]) -> Tensor:
        """Class probabilities (B, K, 5) of whole windows (the model batch fields as NumPy, with
        `beat_context`, the `record_context` of each window's record; tokens (B, K, d) from the
        backbone); rows of padded beats are meaningless."""
        mask = torch.as_tensor(windows["rpeaks"] >= 0, device=tokens.device)
        feats = beat_features(windows["signal"], windows["rpeaks"], windows["rr"],
                              self.config.fs, windows["beat_context"])
        return self(window_relative(tokens, mask),
                    torch.as_tensor(feats, device=tokens.device)).softmax(-1)
