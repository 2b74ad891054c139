"""Masked-beat self-supervision: hide a fraction of the beats (from the beat tokens and from
the temporal path's signal) and rebuild each from its context; unlabelled windows train too."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ecgmoe_cli.model.config import EcgMoeConfig
from ecgmoe_cli.model.encoders import gather_beats


def masked_beat_loss(model: Any, batch: Mapping[str, Tensor],
                     generator: torch.Generator | None = None) -> Tensor:
    """EcgMoe.ssl_loss: the reconstruction error of the masked beats + the balancing loss."""
    c = model.config
    rpeaks = batch["rpeaks"].long()
    valid = rpeaks >= 0
    u = torch.rand(rpeaks.shape, generator=generator, device=rpeaks.device)
    ssl_mask = valid & (u < c.ssl_mask_frac)
    with running_stats_frozen(model):
        feats, seq = model._encode(batch, ssl_mask)
    lead_mask = batch["lead_mask"].to(torch.bool)
    signal = batch["signal"].float() * lead_mask.unsqueeze(-1)
    beats, flat = gather_beats(signal, rpeaks, c.beat_pre, c.beat_samples, ssl_mask)
    pad = model.ssl_samples * c.ssl_downsample - c.beat_samples
    target = F.avg_pool1d(F.pad(beats, (0, pad)), c.ssl_downsample)  # (n, L, S / ds)
    B, K, d = seq.shape
    pred = model.ssl_decoder(seq.reshape(B * K, d).index_select(0, flat))
    err = (pred.view_as(target) - target).pow(2).mean(-1)  # (n, L)
    w = lead_mask.index_select(0, flat // K).float()  # present leads only
    recon = (err * w).sum() / w.sum().clamp_min(1.0)
    return recon + c.balance_coef * feats.balance_loss


@contextmanager
def running_stats_frozen(module: nn.Module) -> Iterator[None]:
    """BatchNorm normalises with the batch's statistics but leaves its running ones alone.

    The masked-beat pass blanks beats out of the signal; had its batches entered the running
    statistics inference uses, they would describe signals inference never sees (the first
    conv's variance came out 13-14 % low in weights trained that way)."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch
    try:
        yield
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum


def beat_cover(rpeaks: Tensor, chosen: Tensor, c: EcgMoeConfig, W: int) -> Tensor:
    """(B, W) float: 0 inside the windows of the chosen beats, 1 elsewhere."""
    pos = rpeaks.unsqueeze(-1) - c.beat_pre + torch.arange(c.beat_samples, device=rpeaks.device)
    keep = torch.ones(rpeaks.shape[0], W + 1, device=rpeaks.device)
    idx = torch.where(chosen.unsqueeze(-1) & (pos >= 0) & (pos < W), pos, W)  # W = a sink column
    keep.scatter_(1, idx.reshape(rpeaks.shape[0], -1), 0.0)
    return keep[:, :W]
