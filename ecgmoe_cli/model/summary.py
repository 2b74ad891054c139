"""Sizes of a model: parameters per part, FLOPs per record, active vs total experts, adapters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ecgmoe_cli.model.batch import example_batch
from ecgmoe_cli.model.config import EcgMoeConfig
from ecgmoe_cli.model.ecgmoe import EcgMoe, count_parameters
from ecgmoe_cli.model.moe import MoE

# parameter-name prefixes of each part of EcgMoe
PARTS = {
    "temporal encoders": ("temporal.",),
    "beat encoder": ("beat_encoder.", "lead_embed."),
    "morphology path": ("morph.", "morph_pool."),
    "rhythm path": ("rhythm.", "rr_embed.", "record_token", "rhythm_ln."),
    "fusion": ("fusion.",),
    "ssl decoder": ("ssl_decoder.", "mask_token"),
    "task heads": ("heads.",),
}


def flops_per_record(model: nn.Module, batch: dict[str, torch.Tensor],
                     tasks: Sequence[str] | None = None) -> float:
    """Forward FLOPs (matmuls and convolutions, as FlopCounterMode counts them) per record."""
    kwargs = {} if tasks is None else {"tasks": tasks}
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(batch, **kwargs)
    return counter.get_total_flops() / batch["signal"].shape[0]


COUNT_BEATS, COUNT_BATCH = 12, 8  # the record sizes are quoted for: 12 beats (72 bpm)


def size_counts(model: nn.Module, config: EcgMoeConfig, tasks: Sequence[str] | None = None
                ) -> dict[str, float]:
    """Parameters (as trained: before BatchNorm is folded for serving) and forward FLOPs per
    record on the example batch: the one count `ecgmoe info` and `ecgmoe bench` both print
    (they disagreed: bench counted a folded model on its timing batch)."""
    was_training = model.training
    model.eval()
    batch = example_batch(config, COUNT_BATCH, n_beats=COUNT_BEATS)
    counts = {"parameters": count_parameters(model),
              "flops_per_record": flops_per_record(model, batch, tasks)}
    model.train(was_training)
    return counts


def model_summary(model: EcgMoe) -> dict[str, Any]:
    """JSON-ready sizes; parameters and FLOPs from `size_counts` (records of 12 beats)."""
    named = dict(model.named_parameters())
    adapter_names = {n for t in model.tasks for n in model.adapter_keys(t)}
    parts = {part: sum(p.numel() for n, p in named.items() if n.startswith(prefixes)
                       and not (part == "fusion" and n in adapter_names))
             for part, prefixes in PARTS.items()}
    parts["task adapters (LoRA)"] = sum(named[n].numel() for n in adapter_names
                                        if not n.startswith("heads."))
    moes = [m for m in model.modules() if isinstance(m, MoE)]
    expert = sum(p.numel() for m in moes for p in (m.w1, m.b1, m.w2, m.b2))
    router = sum(m.router.weight.numel() for m in moes)
    c = model.config
    adapters = {}
    for task in model.tasks:
        n = sum(named[k].numel() for k in model.adapter_keys(task))
        rank, alpha = model.adapter_rank(task)
        adapters[task] = {"rank": rank, "alpha": alpha, "parameters": n, "bytes": 4 * n}
    backbone = sum(named[k].numel() for k in model.backbone_keys() if k in named)
    model.eval()
    counts = size_counts(model, c)
    return {
        "config": c.name,
        "parameters": {"total": counts["parameters"], "backbone": backbone, "parts": parts},
        "flops_per_record": counts["flops_per_record"],
        "flops_backbone_per_record": size_counts(model, c, tasks=[])["flops_per_record"],
        "flops_measured_at_beats": COUNT_BEATS,
        "experts": {"layers": len(moes), "n_experts": c.n_experts, "top_k": c.top_k,
                    "total_expert_parameters": expert,
                    "active_expert_parameters_per_token": expert * c.top_k // max(c.n_experts, 1),
                    "router_parameters": router},
        "adapters": adapters,
    }
