"""RR evidence for atrial fibrillation: how irregular a window's beat intervals are, as a term
added to the rhythm head's `afib` logit.

```
pre-RR of each detected beat (B, K) ─rr_irregularity─▶ (B, F) ─standardise, · coef─▶ RR logit
fused afib logit = weight · (raw / T) + rr_weight · RR logit + bias
```
AF is "irregularly irregular": the intervals scatter with no pattern, where ectopic beats give
short-long pairs and bigeminy two clusters. The backbone sees the intervals too, but its AF
probability swings between windows of one irregular record (CinC 2017 A02248: 0.78, 0.10,
0.11); a few measured statistics of the same window, fitted beside it, steady it (BENCHMARKS.md,
*Accuracy on real data*). The features and the fit are plain (a logistic regression on the
training fold, its fusion with the head on the validation fold: training/rhythm_evidence.py),
so the term is a handful of numbers in the adapter's JSON.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from ecgmoe_cli.errors import EcgMoeError

RR_FEATURES = (
    "log_n_beats",  # how many intervals the statistics rest on
    "log_median_rr",  # rate: irregularity means less at 150 bpm than at 60
    "nrmssd",  # RMS of successive differences / mean RR
    "median_step",  # median |successive difference| / median RR: robust to one ectopic
    "big_steps",  # share of successive differences over 10 % of the interval before
    "near_median",  # share of intervals within 8 % of the median (sinus with a few ectopics)
    "two_clusters",  # share within 8 % of the nearer of the best two interval levels (bigeminy)
    "step_autocorr",  # lag-1 correlation of successive differences (short-long pairs: < 0)
    "cv",  # standard deviation / mean RR
    "spread",  # 10th-90th percentile range / median RR
    "nrmssd_sinus",  # nrmssd once premature-compensatory pairs are left out
    "sinus_share",  # share of intervals not in such a pair
)
N_RR_FEATURES = len(RR_FEATURES)
MIN_INTERVALS = 4  # fewer: every feature 0, one fixed RR logit (a few beats say little)
_NEAR, _STEP = 0.08, 0.10
_PREMATURE, _COMPENSATORY = 0.85, 1.05


def rr_irregularity(rr: Tensor, beat_mask: Tensor) -> Tensor:
    """(B, K) pre-RR seconds of each beat (valid where beat_mask) -> (B, N_RR_FEATURES).

    The valid beats must come first in each row (as `prepare` writes them). Rows with fewer
    than MIN_INTERVALS intervals are all zeros.
    """
    r = rr.float()
    m = beat_mask & (r > 0)
    n = m.sum(1)
    nan = torch.full_like(r, float("nan"))
    x = torch.where(m, r, nan)
    med = x.nanquantile(0.5, 1)  # the mean of the middle two (nanmedian takes the lower)
    mean = x.nanmean(1)
    d = x[:, 1:] - x[:, :-1]  # NaN wherever either interval is missing
    dm = ~torch.isnan(d)
    nd = dm.sum(1).clamp(min=1)
    d0 = torch.nan_to_num(d)
    rmssd = (d0.square().sum(1) / nd).sqrt()
    step = d.abs().nanquantile(0.5, 1)
    big = ((d.abs() / x[:, :-1] > _STEP) & dm).sum(1) / nd
    dev = (x - med[:, None]).abs() / med[:, None]
    near = ((dev < _NEAR) & m).sum(1) / n.clamp(min=1)
    clusters = _two_clusters(x, m)
    autocorr = _lag1_corr(d, dm)
    cv = torch.sqrt(torch.nan_to_num((x - mean[:, None]).square()).sum(1) / n.clamp(min=1)) / mean
    spread = (x.nanquantile(0.9, 1) - x.nanquantile(0.1, 1)) / med
    nrmssd_sinus, sinus = _without_ectopic_pairs(x, m, med)
    f = torch.stack([n.double().clamp(min=1).log(), med.log(), rmssd / mean, step / med, big,
                     near, clusters, autocorr, cv, spread, nrmssd_sinus, sinus], 1)
    enough = (n >= MIN_INTERVALS)[:, None]
    return torch.where(enough, torch.nan_to_num(f, nan=0.0, posinf=0.0, neginf=0.0),
                       torch.zeros_like(f)).to(rr.dtype)


def _two_clusters(x: Tensor, m: Tensor) -> Tensor:
    """Best share of intervals within _NEAR of the mean of their side of one split of the
    sorted intervals (every split tried; one level counts as a split with an empty side)."""
    s = torch.sort(torch.nan_to_num(x, nan=float("inf")), 1).values  # valid first, ascending
    n = m.sum(1, keepdim=True)  # (B, 1)
    valid = torch.arange(s.shape[1], device=s.device)[None] < n
    s0 = torch.where(valid, s, torch.zeros_like(s))
    c = torch.cumsum(s0, 1)
    k = torch.arange(1, s.shape[1] + 1, device=s.device, dtype=s.dtype)[None]  # low side size
    low = c / k
    high = (c[:, -1:] - c) / (n - k).clamp(min=1)
    lo, hi = low[:, :, None], high[:, :, None]  # (B, split, 1) against intervals (B, 1, K)
    xs = s0[:, None, :]
    near = ((xs - lo).abs() < _NEAR * lo) | ((xs - hi).abs() < _NEAR * hi)  # empty side: hi 0
    share = (near & valid[:, None, :]).sum(2) / n.clamp(min=1)
    split_ok = k <= n  # (B, split)
    return torch.where(split_ok, share, torch.zeros_like(share)).amax(1)


def _lag1_corr(d: Tensor, dm: Tensor) -> Tensor:
    """Pearson correlation of consecutive successive differences (0 where undefined)."""
    a, b = d[:, :-1], d[:, 1:]
    ok = dm[:, :-1] & dm[:, 1:]
    cnt = ok.sum(1).clamp(min=1)
    a0, b0 = torch.where(ok, a, torch.zeros_like(a)), torch.where(ok, b, torch.zeros_like(b))
    ma, mb = a0.sum(1) / cnt, b0.sum(1) / cnt
    da, db = torch.where(ok, a - ma[:, None], 0.0), torch.where(ok, b - mb[:, None], 0.0)
    den = (da.square().sum(1) * db.square().sum(1)).sqrt()
    return torch.where((den > 0) & (ok.sum(1) >= 3), (da * db).sum(1) / den.clamp(min=1e-12),
                       torch.zeros_like(den))


def _without_ectopic_pairs(x: Tensor, m: Tensor, med: Tensor) -> tuple[Tensor, Tensor]:
    """nrmssd of the intervals outside premature (< 85 % of the median) - compensatory
    (> 105 %) pairs, and the share of intervals kept."""
    pair = (x[:, :-1] < _PREMATURE * med[:, None]) & (x[:, 1:] > _COMPENSATORY * med[:, None])
    drop = torch.zeros_like(m)
    drop[:, :-1] |= pair
    drop[:, 1:] |= pair
    keep = m & ~drop
    # the kept intervals moved to the front, in order: differences skip the dropped ones
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)
    nk = keep.sum(1)
    first = torch.arange(x.shape[1], device=x.device)[None] < nk[:, None]
    packed = torch.where(first, x.gather(1, order), torch.full_like(x, float("nan")))
    dk = packed[:, 1:] - packed[:, :-1]
    okk = ~torch.isnan(dk)
    rm = (torch.nan_to_num(dk).square().sum(1) / okk.sum(1).clamp(min=1)).sqrt()
    mk = packed.nanmean(1)
    nr = torch.where(nk > MIN_INTERVALS - 1, rm / mk, torch.zeros_like(rm))
    return nr, nk / m.sum(1).clamp(min=1)


@dataclass(frozen=True)
class RhythmEvidence:
    """The fitted RR term of one label of a head; saved in its adapter's JSON."""

    label: str
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    weight: float  # on the head's own calibrated logit
    rr_weight: float  # on the RR logit
    bias: float

    def __post_init__(self) -> None:
        vectors = (self.mean, self.scale, self.coef)
        numbers_ok = all(math.isfinite(v) for vec in vectors for v in vec) and all(
            math.isfinite(v) for v in (self.intercept, self.weight, self.rr_weight, self.bias))
        if (not isinstance(self.label, str) or any(len(v) != N_RR_FEATURES for v in vectors)
                or not numbers_ok or any(s <= 0 for s in self.scale)):
            raise EcgMoeError(f"bad rhythm evidence: {N_RR_FEATURES} finite means, scales > 0 "
                              "and coefficients are needed, with finite weights")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"features": list(RR_FEATURES)}

    @classmethod
    def from_dict(cls, d: Any) -> RhythmEvidence:
        if not isinstance(d, dict) or d.get("features") != list(RR_FEATURES):
            raise EcgMoeError("bad rhythm evidence: not the RR features this version computes")
        try:
            return cls(str(d["label"]), *(tuple(float(v) for v in d[k])
                                          for k in ("mean", "scale", "coef")),
                       *(float(d[k]) for k in ("intercept", "weight", "rr_weight", "bias")))
        except (KeyError, TypeError, ValueError):
            raise EcgMoeError("bad rhythm evidence: a field is missing or not numeric") from None

    def rr_logit(self, feats: Tensor) -> Tensor:
        """(B, F) RR features -> (B,) the logistic regression's logit."""
        mean, scale, coef = (feats.new_tensor(v) for v in (self.mean, self.scale, self.coef))
        return ((feats - mean) / scale) @ coef + self.intercept

    def fuse(self, raw: Tensor, temperature: float, feats: Tensor) -> Tensor:
        """The label's raw output such that raw / T is the fused logit."""
        fused = self.weight * raw / temperature + self.rr_weight * self.rr_logit(feats) + self.bias
        return fused * temperature
