"""LoRA adapters (peft-style) that wrap existing nn.Linear layers, several named adapters each.

```
           ┌───── base W (frozen, shared by every task) ─────┐
x (B, i) ──┤                                                  ├─▶ y_t = xWᵀ + b + s_t·x A_tᵀ B_tᵀ
           └─ A_t (r, i) ─▶ B_t (o, r) = 0 at init, s_t=α/r ─┘
```
- `forward(x)` serves the active adapter (or none); `forward_many(x, names)` serves several at
  once: x (B, i) or (T, B, i) -> (T, B, o) with the base matmul done once for a shared input and
  the deltas of all T adapters in one einsum (ranks padded to the largest).
- `merge(name)` folds one adapter into W (for single-task serving); `unmerge()` takes it out.
- `inject_lora(model, targets)` replaces the nn.Linear modules whose names end with a target.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ecgmoe_cli.errors import EcgMoeError


class LoRALinear(nn.Module):
    """An nn.Linear with frozen base weights and named low-rank adapters."""

    def __init__(self, base: nn.Linear, freeze_base: bool = True) -> None:
        super().__init__()
        self.base = base
        if freeze_base:  # EcgMoe keeps its fusion base trainable: `train` fits it, `finetune` not
            base.requires_grad_(False)
        self.lora_A = nn.ParameterDict()  # name -> (r, in)
        self.lora_B = nn.ParameterDict()  # name -> (out, r)
        self.rank: dict[str, int] = {}
        self.alpha: dict[str, float] = {}
        self.active: str | None = None
        self.merged: str | None = None

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def scaling(self, name: str) -> float:
        r = self.rank[name]
        return self.alpha[name] / r if r else 0.0

    def add_adapter(self, name: str, r: int, alpha: float) -> None:
        """A new adapter of rank r (0 = off: no tensors, zero delta); B = 0 so it starts at base."""
        if name in self.rank:
            raise EcgMoeError(f"LoRA adapter {name!r} already exists")
        if r < 0 or not 0 < alpha < float("inf"):
            raise EcgMoeError(f"LoRA adapter {name!r}: rank must be >= 0 and alpha > 0")
        self.rank[name], self.alpha[name] = r, float(alpha)
        if r:
            w = self.base.weight
            a = torch.empty(r, self.in_features, dtype=w.dtype, device=w.device)
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
            self.lora_A[name] = nn.Parameter(a)
            self.lora_B[name] = nn.Parameter(torch.zeros(self.out_features, r, dtype=w.dtype,
                                                         device=w.device))

    def remove_adapter(self, name: str) -> None:
        if self.merged == name:
            self.unmerge()
        self.rank.pop(name, None)
        self.alpha.pop(name, None)
        for d in (self.lora_A, self.lora_B):
            if name in d:
                del d[name]
        if self.active == name:
            self.active = None

    def delta_weight(self, name: str) -> Tensor:
        """The (out, in) matrix this adapter adds to W."""
        if not self.rank.get(name):
            return torch.zeros_like(self.base.weight)
        return (self.lora_B[name] @ self.lora_A[name]) * self.scaling(name)

    def merge(self, name: str, safe_merge: bool = True) -> None:
        """Fold adapter `name` into W; safe_merge refuses a non-finite result."""
        if self.merged == name:
            warnings.warn(f"LoRA adapter {name!r} is already merged; nothing done", stacklevel=2)
            return
        if self.merged is not None:
            raise EcgMoeError(f"unmerge adapter {self.merged!r} before merging {name!r}")
        if name not in self.rank:
            raise EcgMoeError(f"no LoRA adapter named {name!r}")
        with torch.no_grad():
            new = self.base.weight + self.delta_weight(name)
            if safe_merge and not torch.isfinite(new).all():
                raise EcgMoeError(f"merging LoRA adapter {name!r} gives non-finite weights")
            self.base.weight.copy_(new)
        self.merged = name

    def unmerge(self) -> None:
        """Take the merged adapter back out of W; warns when nothing is merged."""
        if self.merged is None:
            warnings.warn("no LoRA adapter is merged; nothing done", stacklevel=2)
            return
        with torch.no_grad():
            self.base.weight.sub_(self.delta_weight(self.merged))
        self.merged = None

    def _delta(self, x: Tensor, name: str) -> Tensor:
        return F.linear(F.linear(x, self.lora_A[name]), self.lora_B[name]) * self.scaling(name)

    def forward(self, x: Tensor) -> Tensor:
        """Base output plus the active adapter's delta (x (..., in) -> (..., out))."""
        y = self.base(x)
        if self.merged == self.active:
            return y
        if self.merged is not None and self.rank[self.merged]:
            y = y - self._delta(x, self.merged)
        if self.active is not None and self.rank[self.active]:
            y = y + self._delta(x, self.active)
        return y

    def forward_many(self, x: Tensor, names: Sequence[str]) -> Tensor:
        """All `names` adapters in one pass: x (B, i) shared or (T, B, i) -> (T, B, o)."""
        T = len(names)
        y = self.base(x)
        if y.dim() == 2:
            y = y.unsqueeze(0).expand(T, *y.shape)
        ranks = [self.rank[n] for n in names]
        r_max = max(ranks, default=0)
        if self.merged is not None and self.rank[self.merged]:
            y = y - self._delta(x, self.merged)  # the other tasks see the unmerged base
        if r_max == 0:
            return y
        zeros_a = self.base.weight.new_zeros(r_max, self.in_features)
        zeros_b = self.base.weight.new_zeros(self.out_features, r_max)
        # ranks differ per task: pad each A with zero rows and each B with zero columns
        a = torch.stack([F.pad(self.lora_A[n], (0, 0, 0, r_max - r)) if r else zeros_a
                         for n, r in zip(names, ranks)])  # (T, r, i)
        b = torch.stack([F.pad(self.lora_B[n], (0, r_max - r)) * self.scaling(n) if r else zeros_b
                         for n, r in zip(names, ranks)])  # (T, o, r)
        if x.dim() == 2:
            u = torch.einsum("bi,tri->tbr", x, a)
        else:
            u = torch.bmm(x, a.transpose(1, 2))
        return y + torch.bmm(u, b.transpose(1, 2))


def inject_lora(model: nn.Module, targets: Sequence[str], freeze_base: bool = True) -> list[str]:
    """Wrap every nn.Linear whose qualified name is or ends with `.target`; returns the names."""
    hits = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)
            and any(name == t or name.endswith("." + t) for t in targets)]
    if not hits:
        raise EcgMoeError(f"no nn.Linear module matches the LoRA targets {list(targets)}")
    for name in hits:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(getattr(parent, child), freeze_base))
    return hits


def lora_layers(model: nn.Module) -> list[LoRALinear]:
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


def mark_only_lora_as_trainable(model: nn.Module, names: Sequence[str] | None = None) -> None:
    """Freeze everything but the LoRA tensors (of `names` only, when given)."""
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in lora_layers(model):
        for d in (layer.lora_A, layer.lora_B):
            for n, p in d.items():
                if names is None or n in names:
                    p.requires_grad_(True)
