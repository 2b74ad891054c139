"""Batched inference for `predict`: the windows of many records share each forward pass.

The backbone runs once per batch and every task's adapter and head in one pass
(`EcgMoe.predict`); results come back per window as numpy arrays, with the routing counts and
beat attention weights that `--explain` summarises.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ecgmoe_cli.model.batch import to_torch
from ecgmoe_cli.model.ecgmoe import EcgMoe
from ecgmoe_cli.model.encoders import fold_batchnorm

WINDOW_FIELDS = ("signal", "lead_mask", "n_valid", "rpeaks", "rr")
# oneDNN caches a compiled convolution per input shape (~2 MB each, 1024 by default). The beat
# encoder sees a different number of beats in every batch, so an unbounded cache grew the
# process by ~0.5 GB over 20,000 records; the few fixed shapes stay cached (LRU).
ONEDNN_CACHE = "32"


@dataclass
class WindowOutputs:
    """Per-window results of a stack of windows (N rows, in input order)."""

    probs: dict[str, np.ndarray]  # task -> (N, n_outputs): probabilities, class probs or values
    routing: dict[str, np.ndarray] = field(default_factory=dict)  # MoE layer -> (N, E) counts
    beat_weights: np.ndarray | None = None  # (N, K) morphology attention over beats

    def rows(self, start: int, stop: int) -> WindowOutputs:
        """The windows start:stop (one record's share of a batch)."""
        return WindowOutputs({k: v[start:stop] for k, v in self.probs.items()},
                             {k: v[start:stop] for k, v in self.routing.items()},
                             None if self.beat_weights is None else self.beat_weights[start:stop])


def weights_id(meta: dict[str, Any], tasks: Sequence[str]) -> str:
    """`<backbone hash 12>-<adapters 8>`: names exactly which tensors produced a report."""
    adapters = meta.get("adapters", {})
    h = hashlib.sha256()
    for t in sorted(tasks):
        h.update(f"{t}:{adapters.get(t, {}).get('tensors_hash', '')};".encode())
    return f"{str(meta['backbone_hash'])[:12]}-{h.hexdigest()[:8]}"


class Predictor:
    """Holds the model on its device; turns stacked windows into per-window outputs."""

    def __init__(self, model: EcgMoe, tasks: Sequence[str], device: str, batch_size: int,
                 explain: bool = False) -> None:
        os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", ONEDNN_CACHE)  # before 1st conv
        self.model, self.tasks = fold_batchnorm(model.eval()), list(tasks)
        self.device, self.batch_size, self.explain = device, batch_size, explain

    def __call__(self, windows: dict[str, np.ndarray]) -> WindowOutputs:
        """windows: the model batch fields stacked over N windows; run in chunks of batch_size."""
        n = len(windows["signal"])
        probs: dict[str, list[np.ndarray]] = {t: [] for t in self.tasks}
        routing: dict[str, list[np.ndarray]] = {}
        beats: list[np.ndarray] = []
        for lo in range(0, n, self.batch_size):
            chunk = {k: windows[k][lo:lo + self.batch_size] for k in WINDOW_FIELDS}
            with torch.inference_mode():
                out = self.model.predict(to_torch(chunk, self.device), self.tasks)
            for t in self.tasks:
                probs[t].append(out[t].float().cpu().numpy())
            if self.explain:
                for layer, counts in self.model.aux["routing"].items():
                    routing.setdefault(layer, []).append(counts.float().cpu().numpy())
                if self.model.aux["beat_weights"] is not None:
                    beats.append(self.model.aux["beat_weights"].float().cpu().numpy())
        return WindowOutputs({t: np.concatenate(v) for t, v in probs.items()},
                             {k: np.concatenate(v) for k, v in routing.items()},
                             np.concatenate(beats) if beats else None)
