"""Sizes of a model: parameters per part, FLOPs per record, active vs total experts, adapters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ecgmoe_cli.model.batch import example_batch
from ecgmoe_cli.model.ecgmoe import EcgMoe
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


def model_summary(model: EcgMoe, n_beats: int = 12, batch_size: int = 8) -> dict[str, Any]:
    """JSON-ready sizes; FLOPs are measured on records with `n_beats` beats (12 = 72 bpm)."""
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
    batch = example_batch(c, batch_size, n_beats=n_beats)
    return {
        "config": c.name,
        "parameters": {"total": sum(parts.values()), "backbone": backbone, "parts": parts},
        "flops_per_record": flops_per_record(model, batch),
        "flops_backbone_per_record": flops_per_record(model, batch, tasks=[]),
        "flops_measured_at_beats": n_beats,
        "experts": {"layers": len(moes), "n_experts": c.n_experts, "top_k": c.top_k,
                    "total_expert_parameters": expert,
                    "active_expert_parameters_per_token": expert * c.top_k // max(c.n_experts, 1),
                    "router_parameters": router},
        "adapters": adapters,
    }
