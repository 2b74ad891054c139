"""Baselines for `ecgmoe bench` and the ablation table; all share EcgMoe's batch and outputs.

- `dense_multitask`: the same backbone, each MoE replaced by a dense FFN of the same total width
  (n_experts * expert_hidden), one head per task, no adapters;
- `per_task`: one full model per task without adapters, run in turn (`PerTaskModels`);
- `ablation(config, "no_morphology" | "no_rhythm")`: the config with one MoE path switched off;
- `ResNet1d`: a plain 1-D ResNet over the window with one head per task.
Every model's `forward(batch, targets=None)` returns `(outputs, loss)` like EcgMoe.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.model.config import EcgMoeConfig
from ecgmoe_cli.model.ecgmoe import EcgMoe
from ecgmoe_cli.model.heads import TaskHead, stacked_heads, task_loss

ABLATIONS = {"no_morphology": {"use_morphology": False}, "no_rhythm": {"use_rhythm": False}}


def ablation(config: EcgMoeConfig, name: str) -> EcgMoeConfig:
    """The config with one path switched off (for the ablation table)."""
    if name not in ABLATIONS:
        raise EcgMoeError(f"unknown ablation {name!r}; known: {', '.join(ABLATIONS)}")
    return dataclasses.replace(config, name=f"{config.name}-{name}", **ABLATIONS[name])


def dense_multitask(config: EcgMoeConfig, tasks: Sequence[Any]) -> EcgMoe:
    """Same backbone with dense FFNs in place of the MoEs; shared fusion, one head per task."""
    dense = dataclasses.replace(config, name=f"{config.name}-dense", dense_moe=True, lora_rank=0)
    return EcgMoe(dense, tasks)


def per_task(config: EcgMoeConfig, task: Any) -> EcgMoe:
    """One full model for a single task, trained end to end without an adapter."""
    return EcgMoe(dataclasses.replace(config, lora_rank=0), [task])


class PerTaskModels(nn.Module):
    """What a team without adapters deploys: one full model per task, run one after another."""

    def __init__(self, models: Mapping[str, EcgMoe]) -> None:
        super().__init__()
        self.models = nn.ModuleDict(dict(models))

    @classmethod
    def fresh(cls, config: EcgMoeConfig, tasks: Sequence[Any]) -> PerTaskModels:
        """Untrained: a new full model for each task."""
        return cls({t.name: per_task(config, t) for t in tasks})

    @property
    def heads(self) -> dict[str, nn.Module]:
        """Each task's head, keyed like EcgMoe.heads (target scaling and predict serve both)."""
        return {n: m.heads[n] for n, m in self.models.items()}  # type: ignore[index]

    @property
    def tasks(self) -> dict[str, Any]:
        return {n: m.tasks[n] for n, m in self.models.items()}  # type: ignore[index]

    @torch.no_grad()
    def predict(self, batch: Mapping[str, Tensor], tasks: Sequence[str] | None = None
                ) -> dict[str, Tensor]:
        """Like EcgMoe.predict: each requested task from its own model."""
        names = list(self.models) if tasks is None else list(tasks)
        return {n: self.models[n].predict(batch, [n])[n] for n in names}  # type: ignore[operator]

    def forward(self, batch: Mapping[str, Tensor], targets: Mapping[str, Tensor] | None = None
                ) -> tuple[dict[str, Tensor], Tensor | None]:
        outputs: dict[str, Tensor] = {}
        losses = []
        for name, model in self.models.items():
            sub = None if targets is None else {k: v for k, v in targets.items() if k == name}
            out, loss = model(batch, sub)
            outputs.update(out)
            if loss is not None:
                losses.append(loss)
        return outputs, torch.stack(losses).mean() if losses else None


class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1 = nn.Conv1d(cin, cout, 7, stride, 3, bias=False)
        self.b1 = nn.BatchNorm1d(cout)
        self.c2 = nn.Conv1d(cout, cout, 7, 1, 3, bias=False)
        self.b2 = nn.BatchNorm1d(cout)
        self.skip = (nn.Identity() if cin == cout and stride == 1 else
                     nn.Sequential(nn.Conv1d(cin, cout, 1, stride, bias=False),
                                   nn.BatchNorm1d(cout)))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.skip(x) + self.b2(self.c2(F.relu(self.b1(self.c1(x))))))


class ResNet1d(nn.Module):
    """A plain 1-D ResNet over the 12-lead window (plus the lead mask), one head per task."""

    def __init__(self, tasks: Sequence[Any], n_leads: int = 12, width: int = 64) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv1d(2 * n_leads, width, 15, 4, 7, bias=False),
                                  nn.BatchNorm1d(width), nn.ReLU())
        chans = [width, width, 2 * width, 2 * width]
        self.blocks = nn.Sequential(*(_ResBlock(a, b, 2) for a, b in zip([width] + chans, chans)))
        # no anchors: the plain baseline sees only the signal, not the detected beats
        self.heads = nn.ModuleDict({t.name: TaskHead(t, chans[-1], anchored=False)
                                    for t in tasks})

    def forward(self, batch: Mapping[str, Tensor], targets: Mapping[str, Tensor] | None = None
                ) -> tuple[dict[str, Tensor], Tensor | None]:
        mask = batch["lead_mask"].float().unsqueeze(-1)
        x = batch["signal"].float() * mask
        h = self.blocks(self.stem(torch.cat([x, mask.expand_as(x)], dim=1))).mean(-1)  # (B, C)
        names = list(self.heads)
        outs = dict(zip(names, stacked_heads([self.heads[n] for n in names],  # type: ignore[misc]
                                             h.unsqueeze(0).expand(len(names), *h.shape))))
        if targets is None:
            return outs, None
        known = [v for v in (task_loss(self.heads[n], outs[n], y)  # type: ignore[arg-type]
                             for n, y in targets.items() if n in outs) if v is not None]
        return outs, torch.stack(known).mean() if known else h.sum() * 0.0
