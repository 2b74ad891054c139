"""Model batches: the one list of their fields, dataset arrays to tensors, and synthetic batches
for tests and timing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch loads with the model: predict's readers start without it
    import torch
    from torch import Tensor

    from ecgmoe_cli.model.config import EcgMoeConfig

# The model batch: the fields of a window the model reads, and their torch dtypes
BATCH_KEYS = ("signal", "lead_mask", "n_valid", "rpeaks", "rr")
_DTYPES = ("float32", "bool", "int64", "int64", "float32")
# what the beat head reads beside them: signal/beat_features.record_context of each window's
# record, computed per record (never over a batch that mixes records)
BEAT_KEYS = ("beat_context",)


def to_torch(arrays: Mapping[str, np.ndarray], device: str | torch.device = "cpu"
             ) -> dict[str, Tensor]:
    """A numpy batch (Dataset.batch / Prepared fields) -> the model batch, dtypes as the model
    wants."""
    import torch

    return {k: torch.as_tensor(np.asarray(arrays[k])).to(device=device, dtype=getattr(torch, dt))
            for k, dt in zip(BATCH_KEYS, _DTYPES)}


def example_batch(config: EcgMoeConfig, batch_size: int, n_beats: int = 12, n_leads: int = 12,
                  seed: int = 0) -> dict[str, Tensor]:
    """Random signals with `n_beats` evenly spaced R-peaks on the first `n_leads` leads.

    12 beats per 10 s (72 bpm) is the typical record that FLOPs and throughput are quoted for.
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    B, K, W = batch_size, config.max_beats, config.window_samples
    lead_mask = torch.zeros(B, config.n_leads, dtype=torch.bool)
    lead_mask[:, :n_leads] = True
    signal = torch.randn(B, config.n_leads, W, generator=g) * 0.2 * lead_mask.unsqueeze(-1)
    rpeaks = torch.full((B, K), -1, dtype=torch.int64)
    n = min(n_beats, K)
    if n:
        step = W // (n + 1)
        rpeaks[:, :n] = torch.arange(1, n + 1) * step
        signal[:, :n_leads].scatter_add_(2, rpeaks[:, :n].unsqueeze(1).expand(B, n_leads, n),
                                         torch.ones(B, n_leads, n))
    rr = torch.zeros(B, K, 4)
    rr[:, :n] = torch.tensor([0.8, 0.8, 0.8, 1.0])
    return {"signal": signal, "lead_mask": lead_mask, "n_valid": torch.full((B,), W),
            "rpeaks": rpeaks, "rr": rr}
