"""ECG-MoE: temporal encoders + beat encoder + dual-path MoE + hierarchical fusion + task adapters.

```
signal (B,12,W) ──TemporalEncoder──▶ temporal tokens (B,N,d) ─pool─▶ t ─────────────────┐
  │ + rpeaks ─gather─▶ beats (B,K,12,S) ─BeatEncoder─▶ beat tokens (B,K,d)               │
  │     morphology: [LN → MoE] × n_morph ─attn pool over beats─▶ m ──────────────────────┤
  │     rhythm: [record token; beats + RR + time; temporal tokens] ─[attn → MoE] × n─▶ r ─┤
  └─────────────────────────────── FusionNet (+ per-task LoRA, all tasks at once) ◀────────┘
                                        ─▶ (T,B,d) ─▶ task heads ─▶ {task: (B, n_outputs)}
```
API (used by training/, commands/ and weights/store.py):
- `EcgMoe(config, tasks)`; `add_task(task, rank=None, alpha=None)` adds an adapter + head.
- `forward(batch, targets=None, tasks=None, task_weights=None) -> (outputs, loss)`: outputs
  {task: raw (B, n)} (see heads.py for what raw means per kind); loss = mean task loss
  (weighted by `task_weights`, default 1 each) + balance_coef * MoE balancing loss, None
  without targets. Targets: {task: tensor} as in heads.task_loss.
- `encode(batch) -> Features` (the backbone once) and `decode(features, tasks) -> outputs`
  (adapters + heads): a frozen-backbone finetune can cache `encode` under no_grad.
- `predict(batch, tasks=None) -> {task: (B, n)}` probabilities / class probabilities / values.
- `aux` after each forward: detached routing counts {layer: (B, E)}, balance loss and the
  beat attention weights (B, K), for `predict --explain`; the morphology path's beat tokens
  (B, K, d), for the per-beat head (model/beat_head.py).
- `ssl_loss(batch)`: masked-beat reconstruction for unlabeled records.
- `trainable_parameters(task)`: only that task's adapter + head (for finetune);
  `mark_trainable(task)` sets requires_grad to match (None: everything);
  `merge_adapter(task)` / `unmerge_adapter()` for single-task serving.
Batch: the dict of docs/INTERFACES.md (signal, lead_mask, n_valid, rpeaks, rr) as tensors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.model.batch import BATCH_KEYS
from ecgmoe_cli.model.blocks import N_TIME_FREQS, MorphBlock, RhythmBlock, time_features
from ecgmoe_cli.model.config import EcgMoeConfig
from ecgmoe_cli.model.encoders import AttnPool, BeatEncoder, TemporalEncoder, gather_beats
from ecgmoe_cli.model.fusion import FusionNet
from ecgmoe_cli.model.heads import TaskHead, stacked_heads, task_loss
from ecgmoe_cli.model.lora import lora_layers, mark_only_lora_as_trainable
from ecgmoe_cli.model.moe import MoEStats
from ecgmoe_cli.model.rhythm_evidence import rr_irregularity
from ecgmoe_cli.model.ssl import beat_cover, masked_beat_loss
from ecgmoe_cli.signal.beats import GAP_X


@dataclass
class Features:
    """The shared backbone output for a batch: one vector per path and the MoE statistics."""

    morphology: Tensor  # (B, d); zeros when the path is off
    rhythm: Tensor  # (B, d); zeros when the path is off
    temporal: Tensor  # (B, d)
    balance_loss: Tensor  # () mean over MoE layers, with grad
    routing: dict[str, Tensor] = field(default_factory=dict)  # layer -> (B, E) counts
    beat_weights: Tensor | None = None  # (B, K) morphology attention pooling
    mean_rr_ms: Tensor | None = None  # (B,) detected mean RR, gaps left out; NaN with < 2 beats
    beat_tokens: Tensor | None = None  # (B, K, d) morphology path tokens, for the beat head
    rr_irregularity: Tensor | None = None  # (B, F) RR statistics for a head's rhythm evidence
    median_rr_ms: Tensor | None = None  # (B,) the anchor of rr_interval adapters saved before


class EcgMoe(nn.Module):
    """The ECG-MoE model with one LoRA adapter and one head per task."""

    def __init__(self, config: EcgMoeConfig, tasks: Sequence[Any] = ()) -> None:
        super().__init__()
        c, d = config, config.d_model
        self.config = c
        self.lead_embed = nn.Linear(c.n_leads, d)
        self.temporal = TemporalEncoder(c)
        self.beat_encoder = BeatEncoder(c)
        self.morph = nn.ModuleList(MorphBlock(c)
                                   for _ in range(c.n_morph_layers * c.use_morphology))
        self.morph_pool = AttnPool(d)
        self.rr_embed = nn.Linear(4 + 2 * N_TIME_FREQS, d)
        self.record_token = nn.Parameter(torch.zeros(1, 1, d))
        self.rhythm = nn.ModuleList(RhythmBlock(c) for _ in range(c.n_rhythm_layers * c.use_rhythm))
        self.rhythm_ln = nn.LayerNorm(d)
        self.fusion = FusionNet(d, c.lora_targets)
        self.heads = nn.ModuleDict()
        self.mask_token = nn.Parameter(torch.zeros(d))
        self.ssl_samples = -(-c.beat_samples // c.ssl_downsample)
        self.ssl_decoder = nn.Linear(d, c.n_leads * self.ssl_samples)
        self.tasks: dict[str, Any] = {}
        self.aux: dict[str, Any] = {}
        for task in tasks:
            self.add_task(task)

    # ---- tasks and adapters -------------------------------------------------------------
    def add_task(self, task: Any, rank: int | None = None, alpha: float | None = None) -> None:
        """A task's adapter (rank 0 = none: the fusion base serves it) and head."""
        if task.name in self.tasks:
            raise EcgMoeError(f"task {task.name!r} is already in the model")
        rank = self.config.lora_rank if rank is None else rank
        alpha = self.config.lora_alpha if alpha is None else alpha
        for layer in lora_layers(self.fusion):
            layer.add_adapter(task.name, rank, alpha)
        self.heads[task.name] = TaskHead(task, self.config.d_model).to(self.mask_token.device)
        self.tasks[task.name] = task

    def remove_task(self, task: str) -> None:
        self._check_tasks([task])
        for layer in lora_layers(self.fusion):
            layer.remove_adapter(task)
        del self.heads[task]
        del self.tasks[task]

    def adapter_rank(self, task: str) -> tuple[int, float]:
        layer = lora_layers(self.fusion)[0]
        return layer.rank[task], layer.alpha[task]

    def trainable_parameters(self, task: str) -> list[nn.Parameter]:
        """Only `task`'s LoRA tensors and head (what finetune trains)."""
        self._check_tasks([task])
        params = list(self.heads[task].parameters())
        for layer in lora_layers(self.fusion):
            params += [d[task] for d in (layer.lora_A, layer.lora_B) if task in d]
        return params

    def mark_trainable(self, task: str | None) -> None:
        """requires_grad on `task`'s adapter + head only, or on everything when task is None."""
        if task is None:
            self.requires_grad_(True)
            return
        self._check_tasks([task])
        mark_only_lora_as_trainable(self, [task])  # the backbone frozen, as finetune trains
        self.heads[task].requires_grad_(True)

    def adapter_keys(self, task: str) -> list[str]:
        """state_dict keys that belong to `task` (its LoRA tensors and head)."""
        mine = (f".lora_A.{task}", f".lora_B.{task}")
        return [k for k in self.state_dict() if k.endswith(mine) or k.startswith(f"heads.{task}.")]

    def backbone_keys(self) -> list[str]:
        """state_dict keys shared by all tasks (everything but adapters and heads)."""
        return [k for k in self.state_dict()
                if not k.startswith("heads.") and ".lora_A." not in k and ".lora_B." not in k]

    def merge_adapter(self, task: str) -> None:
        for layer in lora_layers(self.fusion):
            layer.merge(task)

    def unmerge_adapter(self) -> None:
        for layer in lora_layers(self.fusion):
            layer.unmerge()

    # ---- backbone -----------------------------------------------------------------------
    def _check_batch(self, batch: Mapping[str, Tensor]) -> None:
        missing = [k for k in BATCH_KEYS if k not in batch]
        if missing:
            raise EcgMoeError(f"model batch lacks {missing}")
        B, L, W = batch["signal"].shape
        c = self.config
        if (L, W) != (c.n_leads, c.window_samples) or batch["rpeaks"].shape[1] != c.max_beats:
            raise EcgMoeError(
                f"batch has {L} leads x {W} samples x {batch['rpeaks'].shape[1]} beats; the model "
                f"expects {c.n_leads} x {c.window_samples} x {c.max_beats} (preprocessing spec "
                "differs from the weights' spec)")

    def encode(self, batch: Mapping[str, Tensor]) -> Features:
        """Run the backbone once: shared features for every task."""
        return self._encode(batch)[0]

    def _encode(self, batch: Mapping[str, Tensor], ssl_mask: Tensor | None = None
                ) -> tuple[Features, Tensor]:
        self._check_batch(batch)
        c = self.config
        lead_mask = batch["lead_mask"].to(torch.bool)
        signal = batch["signal"].float() * lead_mask.unsqueeze(-1)  # masked leads are exactly 0
        rpeaks = batch["rpeaks"].long()
        lead_emb = self.lead_embed(lead_mask.float())  # (B, d): which leads exist
        beat_mask = rpeaks >= 0
        beats, flat = gather_beats(signal, rpeaks, c.beat_pre, c.beat_samples)  # (n, L, S)
        if ssl_mask is not None:  # hide the masked beats from the temporal path too
            signal = signal * beat_cover(rpeaks, ssl_mask, c, signal.shape[-1]).unsqueeze(1)
        tokens, token_mask, t = self.temporal(signal, batch["n_valid"].long(), lead_emb)
        B, K = rpeaks.shape
        enc = self.beat_encoder(beats)  # the real beats only
        x = enc.new_zeros(B * K, c.d_model).index_copy(0, flat, enc).view(B, K, -1)
        x = x + lead_emb.unsqueeze(1) * beat_mask.unsqueeze(-1)
        if ssl_mask is not None:
            x = torch.where(ssl_mask.unsqueeze(-1), self.mask_token.expand_as(x), x)
        stats: dict[str, MoEStats] = {}
        for i, blk in enumerate(self.morph):  # morphology path
            x, stats[f"morph.{i}"] = blk(x, beat_mask)
        m_tokens = x  # (B, K, d): what the beat head classifies
        m, beat_w = self.morph_pool(x, beat_mask) if self.morph else (x.new_zeros(B, c.d_model),
                                                                      None)
        seq_out = x
        r = x.new_zeros(B, c.d_model)
        if self.rhythm:  # rhythm path: record token, beats with RR and time, temporal tokens
            beat_in = x + self.rr_embed(torch.cat([batch["rr"].float(),
                                                   time_features(rpeaks, signal.shape[-1])], -1))
            seq = torch.cat([self.record_token.expand(B, 1, -1), beat_in * beat_mask.unsqueeze(-1),
                             tokens], dim=1)
            mask = torch.cat([beat_mask.new_ones(B, 1), beat_mask, token_mask], dim=1)
            for i, blk in enumerate(self.rhythm):
                seq, stats[f"rhythm.{i}"] = blk(seq, mask)
            r = self.rhythm_ln(seq[:, 0])
            seq_out = seq[:, 1:K + 1]
        balance = torch.stack([s.balance_loss for s in stats.values()]).mean() if stats else \
            t.sum() * 0.0
        feats = Features(m, r, t, balance, {k: s.counts.detach() for k, s in stats.items()},
                         None if beat_w is None else beat_w.detach(),
                         mean_rr_ms(batch["rr"], beat_mask), m_tokens,
                         rr_irregularity(batch["rr"][..., 0].float(), beat_mask),
                         median_rr_ms(batch["rr"], beat_mask))
        return feats, seq_out

    # ---- heads --------------------------------------------------------------------------
    def _check_tasks(self, tasks: Sequence[str]) -> None:
        unknown = [t for t in tasks if t not in self.tasks]
        if unknown:
            raise EcgMoeError(f"model has no task {unknown}; it has {sorted(self.tasks)}")

    def decode(self, feats: Features, tasks: Sequence[str] | None = None) -> dict[str, Tensor]:
        """Every task's adapter and head in one batched pass: {task: raw (B, n_outputs)}."""
        names = list(self.tasks) if tasks is None else list(tasks)
        self._check_tasks(names)
        if not names:
            return {}
        h = self.fusion(feats.morphology, feats.rhythm, feats.temporal, names)  # (T, B, d)
        heads = [self.heads[n] for n in names]
        outs = stacked_heads(heads, h)  # type: ignore[arg-type]
        for i, head in enumerate(heads):
            outs[i] = head.with_anchor(outs[i], feats)  # type: ignore[operator]
            outs[i] = head.with_evidence(outs[i], feats.rr_irregularity)  # type: ignore[operator]
        return dict(zip(names, outs))

    def forward(self, batch: Mapping[str, Tensor], targets: Mapping[str, Tensor] | None = None,
                tasks: Sequence[str] | None = None, task_weights: Mapping[str, float] | None = None
                ) -> tuple[dict[str, Tensor], Tensor | None]:
        feats = self.encode(batch)
        outputs = self.decode(feats, tasks)
        self.aux = {"balance_loss": feats.balance_loss.detach(),  # a tensor: float() would
                    "routing": feats.routing,                   # sync a GPU every forward
                    "beat_weights": feats.beat_weights,
                    "beat_tokens": None if feats.beat_tokens is None
                    else feats.beat_tokens.detach()}
        if targets is None:
            return outputs, None
        losses = {n: task_loss(self.heads[n], outputs[n], y) for n, y in targets.items()
                  if n in outputs}
        known = {n: v for n, v in losses.items() if v is not None}
        if not known:
            task_part = feats.balance_loss * 0.0
        elif task_weights:
            stacked = torch.stack(list(known.values()))
            w = stacked.new_tensor([task_weights.get(n, 1.0) for n in known])
            task_part = (stacked * w).sum() / w.sum()
        else:
            task_part = torch.stack(list(known.values())).mean()
        return outputs, task_part + self.config.balance_coef * feats.balance_loss

    @torch.no_grad()
    def predict(self, batch: Mapping[str, Tensor], tasks: Sequence[str] | None = None
                ) -> dict[str, Tensor]:
        """{task: (B, n)}: probabilities (sigmoid(logit/T)), class probabilities or values."""
        outputs, _ = self(batch, tasks=tasks)
        return {n: self.heads[n].predict(v) for n, v in outputs.items()}  # type: ignore[operator]

    # ---- self-supervision ---------------------------------------------------------------
    def ssl_loss(self, batch: Mapping[str, Tensor], generator: torch.Generator | None = None
                 ) -> Tensor:
        """Masked-beat reconstruction: hide a fraction of beats, rebuild them from context.

        Target: each masked beat averaged over ssl_downsample samples, on the present leads.
        """
        return masked_beat_loss(self, batch, generator)


def mean_rr_ms(rr: Tensor, beat_mask: Tensor) -> Tensor:
    """(B,) mean of the measured RR intervals in ms, as `heart_rate_bpm` takes it (intervals over
    GAP_X median RRs are gaps, not beats); NaN with fewer than two beats.

    The mean, as the rr_interval targets are: in bigeminy the median is one kind of interval
    (examples 00008: median 552 ms, mean 766), and a head correcting it from the morphology
    extrapolated to -88 ms there.
    """
    pre = rr[:, 1:, 0].float() * 1000.0
    known = beat_mask[:, 1:] & (pre > 0)
    med = torch.where(known, pre, torch.full_like(pre, float("nan"))).nanquantile(0.5, 1)
    known = known & (pre <= GAP_X * med[:, None])
    return (torch.where(known, pre, 0.0).sum(1) / known.sum(1)).where(known.any(1), float("nan"))


def median_rr_ms(rr: Tensor, beat_mask: Tensor) -> Tensor:
    """(B,) median of the measured RR intervals in ms; NaN with fewer than two beats.

    rr[..., 0] is each beat's pre-RR in seconds; the first beat only borrows its neighbour's.
    """
    pre = rr[:, 1:, 0].float() * 1000.0
    known = beat_mask[:, 1:] & (pre > 0)
    return torch.where(known, pre, torch.full_like(pre, float("nan"))).nanmedian(dim=1).values


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
