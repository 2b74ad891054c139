"""Hierarchical fusion beat -> rhythm -> record, with every task's LoRA adapter in one pass.

```
morphology m (B, d) ─beat─▶ z_b ─┐
            rhythm r (B, d) ─────┴─rhythm─▶ z_r ─┐
                   temporal t (B, d) ────────────┴─record─▶ LN ─▶ (T, B, d), one slice per task
```
`beat`, `rhythm` and `record` are LoRALinear layers: the first sees the shared (B, d) input, so
its base matmul runs once; from then on the tasks' activations differ and travel as a (T, B, .)
stack through batched matmuls.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ecgmoe_cli.model.lora import LoRALinear, inject_lora, lora_layers


class FusionNet(nn.Module):
    """(morphology, rhythm, temporal) features -> per-task record representation (T, B, d)."""

    def __init__(self, d: int, lora_targets: Sequence[str]) -> None:
        super().__init__()
        self.ln_in = nn.LayerNorm(3 * d)
        self.beat = nn.Linear(d, d)
        self.rhythm = nn.Linear(2 * d, d)
        self.record = nn.Linear(2 * d, d)
        self.ln_out = nn.LayerNorm(d)
        # the base stays trainable: `train` fits it; `finetune` trains only the adapters
        inject_lora(self, [t.removeprefix("fusion.") for t in lora_targets], freeze_base=False)

    def forward(self, m: Tensor, r: Tensor, t: Tensor, tasks: Sequence[str]) -> Tensor:
        if not any(layer.rank[n] for layer in lora_layers(self) for n in tasks):
            # no adapter among these tasks: one shared pass serves them all
            return self._forward(m, r, t, tasks[:1]).expand(len(tasks), *m.shape)
        return self._forward(m, r, t, tasks)

    def _forward(self, m: Tensor, r: Tensor, t: Tensor, tasks: Sequence[str]) -> Tensor:
        d = m.shape[-1]
        m, r, t = self.ln_in(torch.cat([m, r, t], dim=-1)).split(d, dim=-1)
        T = len(tasks)
        zb = F.gelu(self._through("beat", m, tasks))  # (T, B, d)
        zr = F.gelu(self._through("rhythm", torch.cat([zb, r.expand(T, *r.shape)], -1), tasks))
        z = F.gelu(self._through("record", torch.cat([zr, t.expand(T, *t.shape)], -1), tasks))
        return self.ln_out(z)

    def _through(self, name: str, x: Tensor, tasks: Sequence[str]) -> Tensor:
        layer = getattr(self, name)
        if isinstance(layer, LoRALinear):
            return layer.forward_many(x, tasks)
        y = layer(x)  # a layer left out of lora_targets: plain and shared
        return y if y.dim() == 3 else y.expand(len(tasks), *y.shape)
