"""EcgMoeConfig: every size of the model in one dataclass, and the named presets.

`tiny` runs a forward in milliseconds (tests); `base` is the shipped model. The signal sizes
(window, beat window, K) are copied from the PreprocessSpec the weights were trained with:
`EcgMoeConfig.from_spec("base", spec)`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ecgmoe_cli.errors import EcgMoeError

# Upper bounds far above any real model: a lying JSON may not ask for terabytes.
_MAX_WIDTH = 8192
_MAX_LAYERS = 64
_INT_BOUNDS = {"n_leads": 64, "window_samples": 1 << 20, "beat_samples": 1 << 16,
               "max_beats": 4096, "d_model": _MAX_WIDTH, "n_heads": 256,
               "n_temporal_layers": _MAX_LAYERS, "n_experts": 1024, "top_k": 1024,
               "expert_hidden": 1 << 16, "mlp_ratio": 64, "ssl_downsample": 1 << 16}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class EcgMoeConfig:
    """Sizes and switches of ECG-MoE; saved in backbone.json so weights carry their own config."""

    name: str = "base"
    """Preset this config came from (informative only)."""
    n_leads: int = 12
    """Input leads (the canonical 12); missing ones arrive zeroed with lead_mask 0."""
    window_samples: int = 2500
    """W: samples per window (spec.window_samples)."""
    beat_pre: int = 62
    """Samples of a beat window before its R-peak (spec.beat_pre)."""
    beat_samples: int = 175
    """Samples per beat window (spec.beat_samples)."""
    max_beats: int = 32
    """K: beats per window, -1 padded (spec.max_beats)."""
    d_model: int = 128
    """Width of every token and of the fused record representation."""
    n_heads: int = 4
    """Attention heads in the temporal transformer and the rhythm sequence layer."""
    tokenizer_channels: tuple[int, int] = (32, 64)
    """Channels of the two strided stem convolutions of the temporal tokenizer."""
    tokenizer_strides: tuple[int, int, int] = (5, 4, 5)
    """Strides of stem, second conv and token projection: their product is samples per token."""
    tokenizer_kernels: tuple[int, ...] = (3, 9, 27)
    """Depthwise kernel sizes of the multi-scale branches (short to long context)."""
    n_temporal_layers: int = 1
    """Transformer blocks over the temporal tokens."""
    beat_channels: tuple[int, int] = (24, 48)
    """Channels of the beat encoder's first two convolutions (the third gives d_model)."""
    n_experts: int = 16
    """E: experts per MoE layer."""
    top_k: int = 2
    """Experts each token is routed to."""
    expert_hidden: int = 512
    """Hidden width of one expert's FFN."""
    n_morph_layers: int = 2
    """MoE layers on the morphology (beat) path."""
    n_rhythm_layers: int = 1
    """Attention + MoE blocks on the rhythm path."""
    mlp_ratio: int = 2
    """Hidden width of the temporal transformer's dense MLP, in multiples of d_model."""
    balance_coef: float = 0.01
    """Weight of the MoE load-balancing loss in the total loss."""
    use_morphology: bool = True
    """Ablation switch: False drops the morphology path (its features are zero)."""
    use_rhythm: bool = True
    """Ablation switch: False drops the rhythm path (its features are zero)."""
    dense_moe: bool = False
    """Baseline switch: replace each MoE by a dense FFN of width n_experts * expert_hidden."""
    lora_rank: int = 8
    """Default LoRA rank of a task adapter; 0 means no adapter (the fusion base serves)."""
    lora_alpha: float = 16.0
    """Default LoRA alpha; the adapter delta is scaled by alpha / rank."""
    lora_targets: tuple[str, ...] = ("fusion.beat", "fusion.rhythm", "fusion.record")
    """Module-name suffixes of the fusion linears that get per-task adapters."""
    ssl_mask_frac: float = 0.3
    """Fraction of beats masked by the self-supervised reconstruction loss."""
    ssl_downsample: int = 5
    """The SSL decoder reconstructs each masked beat averaged over this many samples."""

    def __post_init__(self) -> None:
        problems = self._bad_types()
        if problems:  # no arithmetic on values of the wrong type
            raise EcgMoeError(f"invalid model config {self.name!r}: " + "; ".join(problems))
        problems += [f"{f} must be in [1, {hi}], got {getattr(self, f)}"
                     for f, hi in _INT_BOUNDS.items() if not 1 <= getattr(self, f) <= hi]
        if not 0 <= self.lora_rank <= _MAX_WIDTH:
            problems.append(f"lora_rank must be in [0, {_MAX_WIDTH}], got {self.lora_rank}")
        for f in ("tokenizer_channels", "beat_channels"):
            if not all(1 <= c <= _MAX_WIDTH for c in getattr(self, f)):
                problems.append(f"{f} must be in [1, {_MAX_WIDTH}], got {getattr(self, f)}")
        if problems:  # the checks below divide and multiply by these
            raise EcgMoeError(f"invalid model config {self.name!r}: " + "; ".join(problems))
        if not 0 <= self.beat_pre < self.beat_samples:
            problems.append(f"beat_pre must be in [0, beat_samples), got {self.beat_pre}")
        if self.d_model % self.n_heads:
            problems.append(f"d_model {self.d_model} must be divisible by n_heads {self.n_heads}")
        if self.top_k > self.n_experts:
            problems.append(f"top_k {self.top_k} must be <= n_experts {self.n_experts}")
        if not all(0 <= n <= _MAX_LAYERS for n in (self.n_morph_layers, self.n_rhythm_layers)):
            problems.append(f"n_morph_layers and n_rhythm_layers must be in [0, {_MAX_LAYERS}]")
        if not (self.use_morphology or self.use_rhythm):
            problems.append("at least one of use_morphology / use_rhythm must be on")
        if not 0 < self.lora_alpha < math.inf:
            problems.append(f"lora_alpha must be finite and > 0, got {self.lora_alpha}")
        if not 0 < self.ssl_mask_frac < 1:
            problems.append(f"ssl_mask_frac must be in (0, 1), got {self.ssl_mask_frac}")
        if not 0 <= self.balance_coef < math.inf:
            problems.append(f"balance_coef must be finite and >= 0, got {self.balance_coef}")
        if min(self.tokenizer_strides) < 1 or self.token_samples > self.window_samples:
            problems.append(f"tokenizer_strides {self.tokenizer_strides} give no token for "
                            f"{self.window_samples} samples")
        if not self.tokenizer_kernels or any(k < 1 or k % 2 == 0 or k > self.window_samples
                                             for k in self.tokenizer_kernels):
            problems.append("tokenizer_kernels must be odd, >= 1 and <= window_samples")
        if problems:
            raise EcgMoeError(f"invalid model config {self.name!r}: " + "; ".join(problems))

    def _bad_types(self) -> list[str]:
        """Fields whose JSON value has the wrong type (a string, a float size, a bad tuple)."""
        problems = []
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.type == "int":
                ok = _is_int(v)
            elif f.type == "float":
                ok = _is_int(v) or isinstance(v, float)
            elif f.type == "bool":
                ok = isinstance(v, bool)
            elif f.type == "str":
                ok = isinstance(v, str)
            elif f.name == "lora_targets":
                ok = isinstance(v, tuple) and all(isinstance(t, str) for t in v)
            else:  # tuples of ints, of fixed length unless "..."
                n = None if "..." in f.type else f.type.count("int")
                ok = (isinstance(v, tuple) and all(_is_int(k) for k in v)
                      and (n is None or len(v) == n))
            if not ok:
                problems.append(f"{f.name} has the wrong type or length: {v!r}")
        return problems

    @property
    def token_samples(self) -> int:
        """Samples covered by one temporal token."""
        out = 1
        for s in self.tokenizer_strides:
            out *= s
        return out

    @property
    def n_tokens(self) -> int:
        """Temporal tokens per window (ceil: the tail token covers a partial stride)."""
        n = self.window_samples
        for s in self.tokenizer_strides:
            n = -(-n // s)
        return n

    @classmethod
    def from_spec(cls, name: str, spec: Any) -> EcgMoeConfig:
        """The preset `name` with its signal sizes taken from a PreprocessSpec."""
        return dataclasses.replace(get_config(name), window_samples=spec.window_samples,
                                   beat_pre=spec.beat_pre, beat_samples=spec.beat_samples,
                                   max_beats=spec.max_beats, n_leads=len(spec.leads))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EcgMoeConfig:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise EcgMoeError(f"model config has unknown fields {unknown}")
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kw)


CONFIGS: dict[str, EcgMoeConfig] = {
    "base": EcgMoeConfig(name="base"),
    "tiny": EcgMoeConfig(
        name="tiny", d_model=32, n_heads=2, tokenizer_channels=(8, 16), tokenizer_kernels=(3, 9),
        beat_channels=(8, 16), n_experts=4, top_k=2, expert_hidden=32, n_morph_layers=1,
        n_rhythm_layers=1, lora_rank=4, lora_alpha=8.0,
    ),
}


def get_config(name: str) -> EcgMoeConfig:
    """The named preset, or an EcgMoeError listing the known names."""
    if name not in CONFIGS:
        raise EcgMoeError(f"unknown model config {name!r}; known: {', '.join(sorted(CONFIGS))}")
    return CONFIGS[name]
