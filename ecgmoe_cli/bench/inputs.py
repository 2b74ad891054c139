"""The inputs of a benchmark: synthetic windows shaped like real ones, or rows of a dataset.

Speed depends on shapes and on how many beats a window holds (beats are gathered, padding is
skipped), so the synthetic batch has real ones: 12 leads, W samples over 10 s, an R-peak every
~0.8 s (75 bpm, jittered) with QRS-like spikes on noise, RR features as preprocessing makes them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ecgmoe_cli.model.batch import to_torch
from ecgmoe_cli.model.config import EcgMoeConfig
from ecgmoe_cli.signal.beats import rr_features

WINDOW_S = 10.0  # the model sees 10 s windows (DESIGN.md)
MEAN_RR_S = 0.8


def synthetic_arrays(config: EcgMoeConfig, batch_size: int, seed: int = 0
                     ) -> dict[str, np.ndarray]:
    """A NumPy model batch of `batch_size` windows with ~0.8 s R-R intervals (seeded)."""
    rng = np.random.default_rng(seed)
    B, L, W, K = batch_size, config.n_leads, config.window_samples, config.max_beats
    fs = W / WINDOW_S
    t = np.arange(W)
    signal = 0.03 * rng.standard_normal((B, L, W)).astype(np.float32)
    rpeaks = np.full((B, K), -1, np.int32)
    rr = np.zeros((B, K, 4), np.float32)
    gain = rng.uniform(0.5, 1.5, (B, L, 1)).astype(np.float32)  # per-lead QRS amplitude (mV)
    for b in range(B):
        beats = np.cumsum(rng.uniform(0.9, 1.1, K + 2) * MEAN_RR_S * fs)
        beats = (beats - rng.uniform(0.2, 1.0) * MEAN_RR_S * fs).astype(np.int64)
        beats = beats[(beats >= 0) & (beats < W)][:K]
        rpeaks[b, :len(beats)] = beats
        rr[b, :len(beats)] = rr_features(beats, fs)
        qrs = np.exp(-0.5 * ((t[None, :] - beats[:, None]) / (0.012 * fs)) ** 2).sum(0)
        signal[b] += gain[b] * qrs.astype(np.float32)
    return {"signal": signal, "lead_mask": np.ones((B, L), bool),
            "n_valid": np.full(B, W, np.int64), "rpeaks": rpeaks, "rr": rr}


def synthetic_batch(config: EcgMoeConfig, batch_size: int, device: str = "cpu", seed: int = 0
                    ) -> dict[str, torch.Tensor]:
    """`synthetic_arrays` as the model's torch batch on `device`."""
    return to_torch(synthetic_arrays(config, batch_size, seed), device)


def dataset_batch(ds: Any, rows: np.ndarray, batch_size: int, device: str = "cpu"
                  ) -> dict[str, torch.Tensor]:
    """The first `batch_size` of `rows` (cycled when fewer) as a model batch on `device`."""
    take = np.asarray(rows, np.int64)[np.arange(batch_size) % len(rows)]
    return to_torch(ds.batch(take), device)
