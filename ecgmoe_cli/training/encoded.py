"""Fine-tuning on cached backbone features.

The backbone is frozen in `finetune` and LoRA sits only on the fusion network, so each
window's backbone features are the same every epoch: compute them once, then every epoch
trains the adapter and head on three (d,) vectors per window instead of the whole model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ecgmoe_cli.model.batch import to_torch
from ecgmoe_cli.model.ecgmoe import Features
from ecgmoe_cli.model.heads import ANCHOR_NAMES, task_loss
from ecgmoe_cli.model.rhythm_evidence import N_RR_FEATURES

FEATURE_KEYS = ("morphology", "rhythm", "temporal")
ANCHOR_KEYS = ANCHOR_NAMES[1:]  # (B,) measurements that anchored heads start from
MEASURE_KEYS = (*ANCHOR_KEYS, "rr_irregularity")  # and (B, F) that rhythm evidence reads


class EncodedDataset:
    """`rows` of a dataset run once through the frozen backbone; same `batch`/`targets` API."""

    def __init__(self, model: Any, dataset: Any, rows: np.ndarray, batch_size: int,
                 device: str, progress: Any = None) -> None:
        self.dataset = dataset
        rows = np.unique(np.asarray(rows, np.int64))
        self._pos = np.full(len(dataset), -1, np.int64)
        self._pos[rows] = np.arange(len(rows))
        chunks: dict[str, list[np.ndarray]] = {k: [] for k in FEATURE_KEYS + MEASURE_KEYS}
        model.eval()
        with torch.no_grad():
            for i in range(0, len(rows), batch_size):
                feats = model.encode(to_torch(dataset.batch(rows[i:i + batch_size]), device))
                for k in FEATURE_KEYS + MEASURE_KEYS:
                    chunks[k].append(getattr(feats, k).float().cpu().numpy())
                if progress is not None:
                    progress()
        empty = {k: (0, model.config.d_model) for k in FEATURE_KEYS} | {
            "rr_irregularity": (0, N_RR_FEATURES)}
        self.features = {k: np.concatenate(v) if v else np.zeros(empty.get(k, (0,)), np.float32)
                         for k, v in chunks.items()}

    def batch(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        pos = self._pos[np.asarray(rows, np.int64)]
        if (pos < 0).any():
            raise IndexError("row was not encoded")
        return {k: v[pos] for k, v in self.features.items()}

    def targets(self, rows: np.ndarray, tasks: Sequence[Any]) -> dict[str, np.ndarray]:
        return self.dataset.targets(rows, tasks)


def features_to_torch(batch: dict[str, np.ndarray], device: str) -> dict[str, Tensor]:
    return {k: torch.as_tensor(batch[k]).to(device) for k in FEATURE_KEYS + MEASURE_KEYS}


def cached_features(f: dict[str, Tensor]) -> Features:
    """The Features that `decode` needs, from a `features_to_torch` batch (no MoE statistics)."""
    return Features(f["morphology"], f["rhythm"], f["temporal"], f["temporal"].new_zeros(()),
                    **{k: f[k] for k in MEASURE_KEYS})


class DecodeObjective(nn.Module):
    """The task loss of the adapter + head on cached features (no balancing, no SSL)."""

    def __init__(self, model: nn.Module, tasks: Sequence[str]) -> None:
        super().__init__()
        self.model: Any = model
        self.tasks = list(tasks)

    def train(self, mode: bool = True) -> DecodeObjective:
        super().train(mode)
        self.model.eval()  # the frozen backbone's buffers never change
        return self

    def forward(self, batch: dict[str, Tensor], targets: dict[str, Tensor]
                ) -> tuple[Tensor, dict[str, float]]:
        zero = batch["temporal"].new_zeros(())
        outputs = self.model.decode(cached_features(batch), self.tasks)
        losses, parts = [], {}
        for name, y in targets.items():
            part = task_loss(self.model.heads[name], outputs[name], y)
            if part is not None:
                losses.append(part)
                parts[name] = float(part.detach())
        loss = torch.stack(losses).mean() if losses else zero + 0.0 * sum(
            o.sum() for o in outputs.values())
        return loss, parts
