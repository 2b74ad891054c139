"""The per-beat head: AAMI EC57 beat classes from each beat's features relative to its own
patient, and the frozen backbone's beat tokens, by boosted decision trees.

```
window signal, rpeaks, rr ─signal/beat_features─▶ (B, K, F) ────────────────────────┐
beat tokens (B, K, d) ─minus the window's median token─▶ onto P token axes ─▶ (B, K, P) ┴─
    concat (B, K, F + P) ─▶ T trees, each a walk of `depth` steps to a leaf ─▶ leaf values
    summed per class ─▶ logits ─the supraventricular rule (N's share to S)─▶ (B, K, 5)
```
Inter-patient, what carries is how a beat differs from the patient's dominant beat (V) and
how early it comes for the patient's rate (S): `beat_features` measures both against the
window's and the record's own beats. The tokens enter only as a difference from the window's
median token: their absolute value says which patient, and a head that learns patients does not
generalise to new ones. Trees, not an MLP: leave-one-record-out on MIT-BIH DS1 they called V at
Se / PPV 90.3 / 88.0 % against the MLP's 81.8 / 82.5 on the same inputs; with the onset step
and the rule the head reads V 91.0 / 91.0 and S 73.4 / 71.6 outside AF (BENCHMARKS.md, *Beat
classes*).
The trees are trained by LightGBM (training/beat_class.py) and held here as plain tensors: a
node whose children are itself is a leaf, so every walk takes the same `depth` steps.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ecgmoe_cli.signal.beat_features import BEAT_FEATURES, N_BEAT_FEATURES, beat_features
from ecgmoe_cli.tasks import AAMI_CLASSES


@dataclass(frozen=True)
class BeatHeadConfig:
    """Sizes of the beat head; saved in its JSON sidecar."""

    d_model: int
    """Width of the backbone's beat tokens."""
    n_components: int = 16
    """Token axes (principal components of the training beats' relative tokens) the trees see."""
    n_trees: int = 0
    """Trees in all (boosting rounds x classes); 0: an untrained head (every class equal)."""
    n_nodes: int = 1
    """Nodes of the largest tree: every tree's arrays are padded to it."""
    depth: int = 0
    """Steps from the root to the deepest leaf."""
    fs: float = 250.0
    """Sampling rate (Hz) of the windows the features are computed on: the backbone's."""
    sv_max_step: float = 0.85
    """The supraventricular rule (`BeatHead.supraventricular`): a beat whose fast stretch
    opened with an RR under this fraction of the one before it (a 15 % drop: 10 % is within
    a marked sinus arrhythmia) ..."""
    sv_min_corr: float = 0.9
    """... and whose QRS correlates with its record's dominant QRS at least this much is not
    N. Over 1: the rule is off."""

    def __post_init__(self) -> None:
        if self.d_model < 1 or not 0 <= self.n_components <= self.d_model:
            raise ValueError(f"beat head needs d_model >= 1 and 0 <= n_components <= d_model, "
                             f"got {self}")
        if self.n_trees < 0 or self.n_nodes < 1 or self.depth < 0:
            raise ValueError(f"beat head tree sizes out of range: {self}")
        if not self.fs > 0:
            raise ValueError(f"beat head fs must be > 0, got {self.fs}")
        if not 0 < self.sv_max_step <= 1:
            raise ValueError(f"beat head sv_max_step must be in (0, 1], got {self.sv_max_step}")

    @property
    def n_inputs(self) -> int:
        return N_BEAT_FEATURES + self.n_components

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_ONSET, _CORR = BEAT_FEATURES.index("log_onset_step"), BEAT_FEATURES.index("corr_qrs_context")


def window_relative(tokens: Tensor, mask: Tensor) -> Tensor:
    """(B, K, d) tokens less their window's median token over its beats (0 at padding)."""
    m = mask.unsqueeze(-1)
    median = torch.where(m, tokens, torch.full_like(tokens, float("nan"))).nanmedian(
        dim=1, keepdim=True).values
    return torch.where(m, tokens - torch.nan_to_num(median, nan=0.0), torch.zeros_like(tokens))


class BeatHead(nn.Module):
    """Boosted trees over each beat's features and projected relative token: (..., 5) logits."""

    def __init__(self, config: BeatHeadConfig) -> None:
        super().__init__()
        self.config = config
        t, m = config.n_trees, config.n_nodes
        self.register_buffer("token_mean", torch.zeros(config.d_model))
        self.register_buffer("token_axes", torch.zeros(config.n_components, config.d_model))
        # per tree and node: the input it splits on and where (x <= threshold goes left)
        self.register_buffer("split_input", torch.zeros(t, m, dtype=torch.int64))
        self.register_buffer("threshold", torch.zeros(t, m))
        self.register_buffer("left", torch.zeros(t, m, dtype=torch.int64))
        self.register_buffer("right", torch.zeros(t, m, dtype=torch.int64))
        self.register_buffer("leaf_value", torch.zeros(t, m))
        self.register_buffer("tree_class", torch.zeros(t, dtype=torch.int64))

    def index_problem(self) -> str | None:
        """Why the trees' indices cannot be walked (one line), or None: a head read from a file
        is checked before it indexes anything."""
        m, k = self.config.n_nodes, len(AAMI_CLASSES)
        for name, limit in (("split_input", self.config.n_inputs), ("left", m), ("right", m),
                            ("tree_class", k)):
            values = getattr(self, name)
            if values.numel() and not (0 <= int(values.min()) and int(values.max()) < limit):
                return f"beat head {name} holds an index outside [0, {limit})"
        return None

    def inputs(self, relative: Tensor, features: Tensor) -> Tensor:
        """(..., F + P) what the trees split on: the features, then the token projections."""
        proj = (relative.float() - self.token_mean) @ self.token_axes.T
        return torch.cat([features.float(), proj], -1)

    def forward(self, relative: Tensor, features: Tensor) -> Tensor:
        """Logits (..., 5) from `window_relative` tokens (..., d) and `beat_features` (..., F):
        training takes the beats of many windows flattened, inference whole windows."""
        return self.supraventricular(self.trees(self.inputs(relative, features)), features)

    def supraventricular(self, logits: Tensor, features: Tensor) -> Tensor:
        """The trees' logits with N's probability moved to S where a beat is premature
        supraventricular by rule: it belongs to a fast stretch (a lone PAC, or any beat of a
        run) that opened with an abrupt RR drop (`log_onset_step` under `sv_max_step`) and its
        QRS is the record's dominant one (`corr_qrs_context`). The trees learn S mostly from
        lone PACs and miss many beats of runs, which are on time against their neighbours
        (leave one record out, outside AF: S Se 55 % by the trees alone, 73 % with it); the rule
        is the textbook definition they cannot extrapolate, and V, F and Q stay theirs to call
        (BENCHMARKS.md, *Beat classes*)."""
        rule = ((features[..., _ONSET] < math.log(self.config.sv_max_step))
                & (features[..., _CORR] >= self.config.sv_min_corr)).unsqueeze(-1)
        n, s = logits[..., :1], logits[..., 1:2]  # AAMI_CLASSES begins N, S
        moved = torch.cat([torch.full_like(n, -torch.inf), torch.logaddexp(n, s),
                           logits[..., 2:]], -1)
        return torch.where(rule, moved, logits)

    def trees(self, x: Tensor) -> Tensor:
        """Logits (..., 5) of inputs (..., F + P): every tree walked at once, a level a step."""
        flat = torch.nan_to_num(x.reshape(-1, x.shape[-1]), nan=0.0)  # LightGBM: NaN as 0
        n, t, m = flat.shape[0], self.config.n_trees, self.config.n_nodes
        base = torch.arange(t, device=x.device) * m  # (T,) each tree's root, flattened
        node = base.expand(n, t).clone()  # (n, T)
        split, thr = self.split_input.reshape(-1), self.threshold.reshape(-1)
        offset = base.repeat_interleave(m)  # children are stored as nodes of their own tree
        left, right = self.left.reshape(-1) + offset, self.right.reshape(-1) + offset
        for _ in range(self.config.depth):
            go_left = flat.gather(1, split[node]) <= thr[node]
            node = torch.where(go_left, left[node], right[node])
        logits = flat.new_zeros(n, len(AAMI_CLASSES))
        logits.index_add_(1, self.tree_class, self.leaf_value.reshape(-1)[node])
        return logits.reshape(*x.shape[:-1], len(AAMI_CLASSES))  # -1 fails on 0 beats

    @torch.no_grad()
    def predict(self, tokens: Tensor, windows: dict[str, np.ndarray]) -> Tensor:
        """Class probabilities (B, K, 5) of whole windows (the model batch fields as NumPy, with
        `beat_context`, the `record_context` of each window's record; tokens (B, K, d) from the
        backbone); rows of padded beats are meaningless."""
        mask = torch.as_tensor(windows["rpeaks"] >= 0, device=tokens.device)
        feats = beat_features(windows["signal"], windows["rpeaks"], windows["rr"],
                              self.config.fs, windows["beat_context"])
        return self(window_relative(tokens, mask),
                    torch.as_tensor(feats, device=tokens.device)).softmax(-1)
