"""What training minimises: the model's multi-task + balancing loss, plus masked-beat SSL.

The per-kind task losses live with the heads (model/heads.py); this module adds what only
training needs: target scaling from the train fold, lead dropout, and the objective module
that DDP wraps (so every loss term runs inside one DDP forward).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.model.ecgmoe import mean_rr_ms, median_rr_ms
from ecgmoe_cli.model.heads import task_loss

# anchor name -> f(rr, beat_mask), as in encode
_MEASURES = {"mean_rr_ms": mean_rr_ms, "median_rr_ms": median_rr_ms}


def anchor_values(anchor: str, dataset: Any, rows: np.ndarray) -> np.ndarray | None:
    """The measurement an anchored head starts from, for dataset rows (NaN where unknown)."""
    measure = _MEASURES.get(anchor)
    if measure is None:
        return None
    rr = torch.as_tensor(np.asarray(dataset.arrays["rr"][rows]))
    beats = torch.as_tensor(np.asarray(dataset.arrays["rpeaks"][rows]) >= 0)
    return measure(rr, beats).numpy()


def set_regression_scaling(model: Any, dataset: Any, rows: np.ndarray, tasks: Sequence[Any]
                           ) -> dict[str, tuple[float, float]]:
    """Give each regression head the train fold's (mean, std): every loss term is O(1).

    An anchored head learns target - anchor, so its scale is the std of that residual; it
    trains with all of its correction (residual_weight 1), calibration weighs it afterwards.
    """
    out = {}
    for t in tasks:
        if t.kind != "regression":
            continue
        y = dataset.targets(rows, [t])[t.name]
        known = np.isfinite(y)
        if known.sum() < 2:
            continue  # keep the head's unit prior
        anchor = anchor_values(model.heads[t.name].anchor, dataset, rows[known])
        spread = y[known] - anchor if anchor is not None else y[known]
        spread = spread[np.isfinite(spread)]
        scale = float(spread.std()) if len(spread) > 1 and spread.std() > 1e-6 else 1.0
        mean = float(y[known].mean())
        model.heads[t.name].set_metadata({"target_mean": mean, "target_scale": scale,
                                          "residual_weight": 1.0})  # calibration refits it
        out[t.name] = (mean, scale)
    return out


def lead_dropout(batch: dict[str, Tensor], p: float, gen: torch.Generator) -> dict[str, Tensor]:
    """With probability p per sample keep only {I}, {I, II} or a random lead subset.

    Trains the model for the one- and two-lead recordings users bring (wearables, Holters).
    """
    mask = batch["lead_mask"]  # (B, 12)
    b, n_leads = mask.shape
    drop = torch.rand(b, generator=gen) < p
    if not drop.any():
        return batch
    choice = torch.randint(0, 3, (b,), generator=gen)
    keep = torch.zeros(b, n_leads, dtype=torch.bool)
    keep[choice == 0, 0] = True
    keep[choice == 1, :2] = True
    rand = torch.rand(b, n_leads, generator=gen) < torch.rand(b, 1, generator=gen)
    keep[choice == 2] = rand[choice == 2]
    keep = keep.to(mask.device)
    new = torch.where(drop.to(mask.device)[:, None], mask & keep, mask)
    new = torch.where(new.any(1, keepdim=True), new, mask)  # never drop every recorded lead
    out = dict(batch)
    out["lead_mask"] = new
    out["signal"] = batch["signal"] * new[:, :, None].to(batch["signal"].dtype)
    return out


class Objective(nn.Module):
    """loss(batch, targets) = model loss (tasks + balancing) + ssl_weight * masked-beat loss.

    `task_weights` {task: w} weight the task losses' mean (default 1 each), for a run that
    favours one task whose signs are subtler than the rest.

    Returns the loss and its parts (floats, for metrics.jsonl).
    """

    def __init__(self, model: nn.Module, tasks: Sequence[str], ssl_weight: float = 0.0,
                 task_weights: Mapping[str, float] | None = None) -> None:
        super().__init__()
        if not (math.isfinite(ssl_weight) and ssl_weight >= 0):  # inf trained, then lost the run
            raise EcgMoeError(f"--ssl-weight must be a finite number >= 0, got {ssl_weight}")
        self.model: Any = model  # EcgMoe (Any: its heads are reached by task name)
        self.tasks, self.ssl_weight = list(tasks), ssl_weight
        self.task_weights = dict(task_weights or {})
        # DDP: an expert no token chose (or a head without targets) would leave a parameter
        # out of the graph; adding 0 * its sum keeps every rank's gradient reduction in step
        self.touch_all = False

    def forward(self, batch: dict[str, Tensor], targets: dict[str, Tensor]
                ) -> tuple[Tensor, dict[str, float]]:
        outputs, loss = self.model(batch, targets, self.tasks, self.task_weights)
        parts = {}
        for name, y in targets.items():
            part = task_loss(self.model.heads[name], outputs[name].detach(), y)
            if part is not None:
                parts[name] = float(part)
        parts["balance"] = float(self.model.aux["balance_loss"])
        if self.ssl_weight > 0 and self.training:
            ssl = self.model.ssl_loss(batch)
            parts["ssl"] = float(ssl.detach())
            loss = loss + self.ssl_weight * ssl
        if self.touch_all and self.training:
            loss = loss + 0.0 * sum(p.sum() for p in self.model.parameters() if p.requires_grad)
        return loss, parts
