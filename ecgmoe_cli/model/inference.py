"""Batched inference for `predict`: the windows of many records share each forward pass.

The backbone runs once per batch and every task's adapter and head in one pass
(`EcgMoe.predict`); results come back per window as numpy arrays, with the routing counts and
beat attention weights that `--explain` summarises, and, given a beat head, every beat's AAMI
class probabilities from the same pass's beat tokens.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ecgmoe_cli.model.batch import BATCH_KEYS, BEAT_KEYS, to_torch

if TYPE_CHECKING:  # torch is imported with the weights: predict's readers start without it
    from ecgmoe_cli.model.beat_head import BeatHead
    from ecgmoe_cli.model.ecgmoe import EcgMoe

# oneDNN caches a compiled convolution per input shape (~2 MB each, 1024 by default). The beat
# encoder's batch follows the beat count (bucketed, but a long run still sees many sizes), and
# an unbounded cache grew the process by ~0.5 GB over 20,000 records; the few fixed shapes stay
# cached (LRU).
ONEDNN_CACHE = "32"


@dataclass
class WindowOutputs:
    """Per-window results of a stack of windows (N rows, in input order)."""

    probs: dict[str, np.ndarray]  # task -> (N, n_outputs): probabilities, class probs or values
    routing: dict[str, np.ndarray] = field(default_factory=dict)  # MoE layer -> (N, E) counts
    beat_weights: np.ndarray | None = None  # (N, K) morphology attention over beats
    beat_probs: np.ndarray | None = None  # (N, K, 5) AAMI class probabilities (beat head)

    def rows(self, start: int, stop: int) -> WindowOutputs:
        """The windows start:stop (one record's share of a batch)."""
        return WindowOutputs({k: v[start:stop] for k, v in self.probs.items()},
                             {k: v[start:stop] for k, v in self.routing.items()},
                             None if self.beat_weights is None else self.beat_weights[start:stop],
                             None if self.beat_probs is None else self.beat_probs[start:stop])

    @staticmethod
    def concat(parts: Sequence[WindowOutputs]) -> WindowOutputs:
        """Consecutive stacks as one (a long record's blocks, in order)."""
        first = parts[0]
        return WindowOutputs(
            {t: np.concatenate([o.probs[t] for o in parts]) for t in first.probs},
            {k: np.concatenate([o.routing[k] for o in parts]) for k in first.routing},
            None if first.beat_weights is None
            else np.concatenate([o.beat_weights for o in parts]),  # type: ignore[misc]
            None if first.beat_probs is None
            else np.concatenate([o.beat_probs for o in parts]))  # type: ignore[misc]


class Predictor:
    """Holds the model on its device; turns stacked windows into per-window outputs."""

    def __init__(self, model: EcgMoe, tasks: Sequence[str], device: str, batch_size: int,
                 explain: bool = False, beat_head: BeatHead | None = None) -> None:
        import torch

        from ecgmoe_cli.model.encoders import fold_batchnorm

        os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", ONEDNN_CACHE)  # before 1st conv
        if device.startswith("cuda"):
            # cuDNN convolves fp32 in TF32 by default: a rounding that moved by batch size and
            # flipped an expert choice now and then (probabilities 0.07 apart between --batch-size
            # 64 and 256 on an H200). Full fp32 keeps a record's report independent of its batch.
            torch.backends.cudnn.allow_tf32 = False
        self.model, self.tasks = fold_batchnorm(model.eval()), list(tasks)
        self.device, self.batch_size, self.explain = device, batch_size, explain
        self.beat_head = None if beat_head is None else beat_head.to(device).eval()

    def __call__(self, windows: dict[str, np.ndarray]) -> WindowOutputs:
        """windows: the model batch fields stacked over N windows; run in chunks of batch_size."""
        import torch

        n = len(windows["signal"])
        probs: dict[str, list[np.ndarray]] = {t: [] for t in self.tasks}
        routing: dict[str, list[np.ndarray]] = {}
        beats: list[np.ndarray] = []
        classes: list[np.ndarray] = []
        for lo in range(0, n, self.batch_size):
            chunk = {k: windows[k][lo:lo + self.batch_size]
                     for k in (*BATCH_KEYS, *BEAT_KEYS) if k in windows}
            with torch.inference_mode():
                batch = to_torch(chunk, self.device)
                out = self.model.predict(batch, self.tasks)
                if self.beat_head is not None:
                    classes.append(self.beat_head.predict(
                        self.model.aux["beat_tokens"], chunk).float().cpu().numpy())
            for t in self.tasks:
                probs[t].append(out[t].float().cpu().numpy())
            if self.explain:
                for layer, counts in self.model.aux["routing"].items():
                    routing.setdefault(layer, []).append(counts.float().cpu().numpy())
                if self.model.aux["beat_weights"] is not None:
                    beats.append(self.model.aux["beat_weights"].float().cpu().numpy())
        return WindowOutputs({t: np.concatenate(v) for t, v in probs.items()},
                             {k: np.concatenate(v) for k, v in routing.items()},
                             np.concatenate(beats) if beats else None,
                             np.concatenate(classes) if classes else None)
