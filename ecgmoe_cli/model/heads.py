"""Task heads: one linear per task on the fused features, with each kind's loss and prediction.

Raw outputs, shape (B, n_outputs):
- binary / multilabel: logits (BCE); predict -> sigmoid(logit / T) per label;
- multiclass: logits (CE); predict -> softmax(logit / T) over classes;
- regression: the scaled target (y - mean) / scale (smooth L1); predict -> value in the task's unit.
Targets given to `task_loss`: binary/multilabel (B, n) 0/1; multiclass (B,) class index;
regression (B,) in the unit; NaN = unknown (left out of the loss).
Temperature, thresholds and the regression mean/scale are metadata (saved in the adapter JSON),
not tensors: calibration and dataset statistics set them, gradients never touch them.
An anchored regression head (`anchor`, e.g. rr_interval on the detected mean RR) predicts a
residual: decode adds (anchor - mean) / scale to its raw output, so raw keeps the meaning above
and the head only learns what the measurement gets wrong (detector misses, ectopy, the target's
own definition). Where the anchor is unknown (fewer than two beats) it falls back to the mean.
Its `residual_weight` (calibration, in [0, 1]) scales the learned correction: validation sets
it to 0 where the correction only adds error to the measurement.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.model.rhythm_evidence import RhythmEvidence
from ecgmoe_cli.tasks import label_group

KINDS = ("binary", "multilabel", "multiclass", "regression")
# Priors for the regression target scaling before training measures the data (by unit).
_UNIT_PRIORS = {"years": (60.0, 18.0), "ms": (800.0, 200.0)}
# Built-in regression tasks that start from a measurement of the signal (Features attribute).
_ANCHORS = {"rr_interval": "mean_rr_ms"}
# "" = not anchored; median_rr_ms: what rr_interval adapters saved before 2026-12-06 start from
ANCHOR_NAMES = ("", *sorted({*_ANCHORS.values(), "median_rr_ms"}))


def _is_number(v: Any) -> bool:
    """A finite int or float from JSON (not a bool, a string or NaN)."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


class TaskHead(nn.Module):
    """Linear d -> n_outputs for one task, plus its calibration metadata."""

    def __init__(self, task: Any, d: int, anchored: bool = True) -> None:
        super().__init__()
        if task.kind not in KINDS:
            raise EcgMoeError(f"task {task.name!r}: unknown kind {task.kind!r}")
        self.task = task
        self.linear = nn.Linear(d, task.n_outputs)
        self.temperature = 1.0
        self.thresholds = [0.5] * task.n_outputs
        self.target_mean, self.target_scale = _UNIT_PRIORS.get(getattr(task, "unit", None) or "",
                                                               (0.0, 1.0))
        self.anchor = _ANCHORS.get(task.name, "") if anchored and task.kind == "regression" else ""
        self.evidence: RhythmEvidence | None = None  # RR evidence on one label (calibrate.py)
        self.residual_weight = 1.0  # an anchored head: the share of its correction kept

    def metadata(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "thresholds": list(self.thresholds),
                "target_mean": self.target_mean, "target_scale": self.target_scale,
                "anchor": self.anchor, "residual_weight": self.residual_weight,
                "evidence": None if self.evidence is None else self.evidence.to_dict()}

    def set_metadata(self, meta: dict[str, Any]) -> None:
        """Restore calibration from an adapter JSON (missing keys keep their defaults).

        An EcgMoeError for values of the wrong type or range: a JSON sidecar is untrusted.
        """
        t = meta.get("temperature", self.temperature)
        mean = meta.get("target_mean", self.target_mean)
        scale = meta.get("target_scale", self.target_scale)
        thresholds = meta.get("thresholds", self.thresholds)
        anchor = meta.get("anchor", self.anchor)
        residual_weight = meta.get("residual_weight", self.residual_weight)
        evidence = meta.get("evidence", self.evidence)
        problems = []
        if isinstance(evidence, dict):
            try:
                evidence = RhythmEvidence.from_dict(evidence)
            except EcgMoeError as e:
                problems.append(str(e))
        if evidence is not None and not (isinstance(evidence, RhythmEvidence)
                                         and self.task.kind != "regression"
                                         and evidence.label in self.task.labels):
            problems.append(f"evidence must name one of the labels {list(self.task.labels)} "
                            "of a classification task")
        elif (isinstance(evidence, RhythmEvidence) and self.task.kind == "multiclass"
              and bool(self.evidence_group(evidence.label).all())):
            problems.append("evidence on a multiclass task must leave some class out of its "
                            "group")
        if not (_is_number(t) and t > 0):
            problems.append(f"temperature must be a finite number > 0, got {t!r}")
        if not _is_number(mean):
            problems.append(f"target_mean must be a finite number, got {mean!r}")
        if not (_is_number(scale) and scale > 0):
            problems.append(f"target_scale must be a finite number > 0, got {scale!r}")
        if not (isinstance(thresholds, (list, tuple)) and len(thresholds) == len(self.thresholds)
                and all(_is_number(v) and 0 <= v <= 1 for v in thresholds)):
            problems.append(f"thresholds must be a list of {len(self.thresholds)} numbers in "
                            f"[0, 1], got {str(thresholds)[:80]}")
        if anchor not in ANCHOR_NAMES or (anchor and self.task.kind != "regression"):
            problems.append(f"anchor must be one of {ANCHOR_NAMES} (regression only), got "
                            f"{str(anchor)[:40]!r}")
        if not (_is_number(residual_weight) and 0 <= residual_weight <= 1):
            problems.append(f"residual_weight must be a number in [0, 1], got "
                            f"{str(residual_weight)[:40]!r}")
        if problems:
            raise EcgMoeError(f"task {self.task.name!r}: bad calibration metadata: "
                              + "; ".join(problems))
        self.temperature, self.target_mean, self.target_scale = float(t), float(mean), float(scale)
        self.thresholds = [float(v) for v in thresholds]
        self.anchor, self.residual_weight = anchor, float(residual_weight)
        self.evidence = evidence

    def anchor_offset(self, feats: Any) -> Tensor | None:
        """(B,) scaled offset from the head's anchor measurement (0 where unknown), or None."""
        value = getattr(feats, self.anchor, None) if self.anchor else None
        if value is None:
            return None
        return torch.nan_to_num((value - self.target_mean) / self.target_scale, nan=0.0)

    def with_anchor(self, raw: Tensor, feats: Any) -> Tensor:
        """Raw outputs of an anchored head: its weighted correction plus the measurement."""
        offset = self.anchor_offset(feats)
        if offset is None:
            return raw
        return raw * self.residual_weight + offset.to(raw.dtype).unsqueeze(-1)

    def evidence_group(self, label: str) -> Tensor:
        """(n_outputs,) bool: the classes a multiclass head's evidence on `label` moves, the
        label and its kinds (`afib` and `afib_rvr` of arrhythmia)."""
        return torch.tensor(label_group(self.task.labels, label))

    def with_evidence(self, raw: Tensor, rr: Tensor | None) -> Tensor:
        """Raw outputs with the evidence label's fused with the windows' (B, F) RR statistics.

        Multiclass: the fused logit is the log-odds of the label's group of classes against the
        rest; the group's logits move together by the change, so the split within either side
        stays the head's."""
        if self.evidence is None or rr is None:
            return raw
        if self.task.kind == "multiclass":
            group = self.evidence_group(self.evidence.label).to(raw.device)
            t = self.temperature  # the log-odds under softmax(raw / T), as a raw label output
            odds = group_log_odds(raw / t, group) * t
            shift = self.evidence.fuse(odds, t, rr.to(raw.dtype)) - odds
            return raw + shift.unsqueeze(1) * group.to(raw.dtype)
        j = self.task.labels.index(self.evidence.label)
        fused = self.evidence.fuse(raw[:, j], self.temperature, rr.to(raw.dtype))
        return torch.cat([raw[:, :j], fused.unsqueeze(1), raw[:, j + 1:]], 1)

    def predict(self, raw: Tensor) -> Tensor:
        """Raw outputs (B, n) -> probabilities, class probabilities or values in the unit."""
        kind = self.task.kind
        if kind == "regression":
            return raw * self.target_scale + self.target_mean
        if kind == "multiclass":
            return (raw / self.temperature).softmax(-1)
        return torch.sigmoid(raw / self.temperature)


def group_log_odds(logits: Tensor, group: Tensor) -> Tensor:
    """(B,) log-odds of the classes in `group` ((n,) bool) against the rest, under softmax."""
    inf = torch.tensor(float("-inf"), dtype=logits.dtype, device=logits.device)
    return (torch.where(group, logits, inf).logsumexp(1)
            - torch.where(group, inf, logits).logsumexp(1))


def stacked_heads(heads: Sequence[TaskHead], h: Tensor) -> list[Tensor]:
    """All heads in one batched matmul: h (T, B, d) -> per task (B, n_t)."""
    n_max = max(hd.linear.out_features for hd in heads)
    w = torch.stack([F.pad(hd.linear.weight, (0, 0, 0, n_max - hd.linear.out_features))
                     for hd in heads])  # (T, n_max, d)
    b = torch.stack([F.pad(hd.linear.bias, (0, n_max - hd.linear.out_features)) for hd in heads])
    out = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))  # (T, B, n_max)
    return [out[i, :, :hd.linear.out_features] for i, hd in enumerate(heads)]


def task_loss(head: TaskHead, raw: Tensor, target: Tensor) -> Tensor | None:
    """Mean loss over the known targets (NaN = unknown), or None when none is known."""
    kind, target = head.task.kind, target.to(raw.device, raw.dtype)
    if kind in ("binary", "multilabel"):
        target = target.reshape(raw.shape)
        known = ~torch.isnan(target)
        if not known.any():
            return None
        return F.binary_cross_entropy_with_logits(raw[known], target[known])
    target = target.reshape(-1)
    known = ~torch.isnan(target)
    if not known.any():
        return None
    if kind == "multiclass":
        return F.cross_entropy(raw[known], target[known].long())
    scaled = (target[known] - head.target_mean) / head.target_scale
    return F.smooth_l1_loss(raw[known, 0], scaled)
