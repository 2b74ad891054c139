"""The encoders that turn a model batch into tokens.

- `gather_beats`: cuts the beat windows out of the signal with one gather (no stored copies);
- `TemporalEncoder`: a multi-scale strided residual conv tokenizer over the 10 s window and a
  small transformer over its tokens, gated together (record-level context);
- `BeatEncoder`: a small residual conv net that embeds one beat (all leads) into one token;
- `Attention`, `AttnPool`: masked self-attention and masked attention pooling shared by paths.

At CPU inference both conv stacks run on (B, C, 1, W) channels-last tensors (`row_layout`),
where oneDNN is several times faster; training keeps (B, C, W). Same weights, same numbers.
There a large batch also goes through them in slices (`CPU_WINDOWS`, `CPU_BEATS`): it bounds
their memory, while the blocks after them get the whole batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ecgmoe_cli.model.config import EcgMoeConfig


def gather_beats(signal: Tensor, rpeaks: Tensor, pre: int, length: int,
                 select: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Cut the selected beats (default: every real one, rpeaks >= 0) out of the signal.

    signal (B, L, W), rpeaks (B, K) -> beats (n, L, length), flat index (n,) into B * K.
    Only selected beats are gathered (padding costs nothing); past the signal edge reads 0.
    """
    B, L, W = signal.shape
    K = rpeaks.shape[1]
    sel = rpeaks >= 0 if select is None else select & (rpeaks >= 0)
    flat = sel.reshape(-1).nonzero().squeeze(1)  # (n,)
    padded = F.pad(signal, (length, length))  # zeros on both sides stand in for the edge
    start = rpeaks.reshape(-1).index_select(0, flat) - pre + length  # (n,)
    windows = padded.unfold(2, length, 1)  # (B, L, W + length + 1, length), a view
    return windows[flat // K, :, start], flat


class Attention(nn.Module):
    """Multi-head self-attention; keys where `mask` is False are ignored."""

    def __init__(self, d: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        B, T, d = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        # every row must keep one valid key (callers guarantee it) or softmax gives NaN
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
        return self.proj(y.transpose(1, 2).reshape(B, T, d))


class Block(nn.Module):
    """Pre-norm transformer block with a dense GELU MLP."""

    def __init__(self, d: int, n_heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = Attention(d, n_heads)
        self.mlp = nn.Sequential(nn.Linear(d, mlp_ratio * d), nn.GELU(),
                                 nn.Linear(mlp_ratio * d, d))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x), mask)
        return x + self.mlp(self.ln2(x))


class AttnPool(nn.Module):
    """Masked attention pooling (B, T, d) -> (B, d); a row with no valid token pools to 0."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.score = nn.Linear(d, 1)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Returns the pooled vector and the weights (B, T) (for --explain)."""
        s = self.score(x).squeeze(-1)
        s = s.masked_fill(~mask, torch.finfo(s.dtype).min)  # -1e9 overflows under fp16 autocast
        w = s.softmax(-1) * mask  # all-masked rows: uniform * 0 = 0, never NaN
        return torch.einsum("bt,btd->bd", w, x), w


# At CPU inference the conv encoders take a large batch in slices of this many windows / beats:
# their activations are most of a forward's peak memory (batch 128: +52 MB temporal, +51 MB
# beats; batch 64: +29 / +32 MB), while the MoE blocks after them run faster on the whole batch.
CPU_WINDOWS = 64
CPU_BEATS = 1024


def cpu_inference(x: Tensor) -> bool:
    """No gradients, on the CPU: where `row_layout` and the encoders' slices apply."""
    return not torch.is_grad_enabled() and x.device.type == "cpu"


def sliced(module: nn.Module, x: Tensor, size: int) -> bool:
    """Whether `module` takes x in slices of `size` rows: CPU inference in eval mode (no batch
    statistics), more rows than that."""
    return cpu_inference(x) and not module.training and x.shape[0] > size


def in_slices(fn: Callable[..., Any], size: int, *xs: Tensor) -> Any:
    """fn over consecutive slices of `size` rows of every x, outputs concatenated along rows."""
    parts = [fn(*(x[i:i + size] for x in xs)) for i in range(0, xs[0].shape[0], size)]
    if isinstance(parts[0], tuple):
        return tuple(torch.cat(p) for p in zip(*parts))
    return torch.cat(parts)


def row_layout(x: Tensor, rows: int | None = None) -> Tensor:
    """(B, C, W) -> (B, C, 1, W) channels-last for CPU inference (no gradients), else x as is;
    `rows` > B adds zero rows in the same copy (the beat encoder's `bucketed` count).

    oneDNN's convolutions ran 1.3-2.7x faster in this layout than on (B, C, W) tensors, its
    depthwise ones (the multi-scale branches) 13-30x; the numbers are the same up to rounding.
    `Conv1d` and `BatchNorm` take either layout; training keeps (B, C, W).
    """
    if not cpu_inference(x):
        return x
    n, c, w = x.shape
    out = torch.empty((max(rows or n, n), c, 1, w), dtype=x.dtype,
                      memory_format=torch.channels_last)
    out[:n, :, 0] = x
    out[n:] = 0.0
    return out


class Conv1d(nn.Conv1d):
    """nn.Conv1d that also runs on the (B, C, 1, W) layout of `row_layout`."""

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 3:
            return super().forward(x)
        return F.conv2d(x, self.weight.unsqueeze(2), self.bias, (1, self.stride[0]),
                        (0, self.padding[0]), (1, self.dilation[0]), self.groups)


def gelu(x: Tensor) -> Tensor:
    """F.gelu; on the channels-last layout it runs on the dense (B, 1, W, C) view, which took
    half the time of F.gelu on the 4D tensor itself."""
    if x.dim() == 4:
        return F.gelu(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    return F.gelu(x)


class GELU(nn.GELU):
    """nn.GELU through `gelu` (either layout)."""

    def forward(self, x: Tensor) -> Tensor:
        return gelu(x)


class BatchNorm(nn.BatchNorm1d):
    """nn.BatchNorm1d that also takes the (B, C, 1, W) layout (an unfolded model in eval)."""

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() not in (2, 3, 4):
            raise ValueError(f"expected 2D, 3D or 4D input (got {input.dim()}D input)")


def _conv_bn(cin: int, cout: int, k: int, stride: int) -> nn.Sequential:
    """Conv -> BatchNorm -> GELU. Without the norm the conv stacks learned several times slower
    than a plain ResNet (benchmarks/ablation.py, BENCHMARKS.md)."""
    return nn.Sequential(Conv1d(cin, cout, k, stride=stride, padding=k // 2, bias=False),
                         BatchNorm(cout), GELU())


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Inference only: fold every BatchNorm1d into the Conv1d before it, in place (the same
    outputs up to float rounding; the beat encoder ran 1.5x faster without separate norms).
    A folded model can no longer be trained or saved (`bn_folded` marks it)."""
    if module.training:
        raise ValueError("fold_batchnorm needs a model in eval mode (running statistics)")
    for seq in module.modules():
        if isinstance(seq, nn.Sequential):
            for i in range(len(seq) - 1):
                if isinstance(seq[i], nn.Conv1d) and isinstance(seq[i + 1], nn.BatchNorm1d):
                    seq[i] = fuse_conv_bn_eval(seq[i], seq[i + 1])
                    seq[i + 1] = nn.Identity()
    module.bn_folded = True
    return module


class ResBlock(nn.Module):
    """Two same-width convs with BatchNorm and a skip: depth at a fixed resolution."""

    def __init__(self, c: int, k: int = 7) -> None:
        super().__init__()
        self.a = _conv_bn(c, c, k, 1)
        self.b = nn.Sequential(Conv1d(c, c, k, padding=k // 2, bias=False), BatchNorm(c))

    def forward(self, x: Tensor) -> Tensor:
        return gelu(x + self.b(self.a(x)))


def depthwise_conv(channels: int, k: int) -> Conv1d:
    """One filter per channel, output as long as the input (odd k)."""
    return Conv1d(channels, channels, k, padding=k // 2, groups=channels)


class TemporalEncoder(nn.Module):
    """Window -> temporal tokens (B, N, d), their mask (B, N), and a pooled vector (B, d)."""

    def __init__(self, c: EcgMoeConfig) -> None:
        super().__init__()
        (c1, c2), (s1, s2, s3), d = c.tokenizer_channels, c.tokenizer_strides, c.d_model
        self.token_samples = c.token_samples
        self.stem = nn.Sequential(_conv_bn(c.n_leads, c1, 2 * s1 + 1, s1), ResBlock(c1),
                                  _conv_bn(c1, c2, 2 * s2 + 1, s2), ResBlock(c2))
        # multi-scale: cheap depthwise convs of growing reach, mixed by the token projection
        self.branches = nn.ModuleList(depthwise_conv(c2, k) for k in c.tokenizer_kernels)
        self.to_tokens = Conv1d(c2 * len(c.tokenizer_kernels), d, s3, stride=s3)
        self.pos = nn.Parameter(torch.zeros(1, c.n_tokens, d))
        self.blocks = nn.ModuleList(Block(d, c.n_heads, c.mlp_ratio)
                                    for _ in range(c.n_temporal_layers))
        self.gate = nn.Linear(2 * d, d)
        self.ln = nn.LayerNorm(d)
        self.pool = AttnPool(d)

    def forward(self, signal: Tensor, n_valid: Tensor, lead_emb: Tensor
                ) -> tuple[Tensor, Tensor, Tensor]:
        if sliced(self, signal, CPU_WINDOWS):
            return in_slices(self._forward, CPU_WINDOWS, signal, n_valid, lead_emb)
        return self._forward(signal, n_valid, lead_emb)

    def _forward(self, signal: Tensor, n_valid: Tensor, lead_emb: Tensor
                 ) -> tuple[Tensor, Tensor, Tensor]:
        h = self.stem(row_layout(signal))  # (B, c2, [1,] W / s1 s2)
        h = torch.cat([gelu(b(h)) for b in self.branches], dim=1)
        pad = (-h.shape[-1]) % self.to_tokens.stride[0]
        if pad:  # F.pad copies even when it adds nothing
            h = F.pad(h, (0, pad))
        conv_tok = self.to_tokens(h).flatten(2).transpose(1, 2)  # (B, N, d)
        N = conv_tok.shape[1]
        start = torch.arange(N, device=signal.device) * self.token_samples
        mask = start.unsqueeze(0) < n_valid.unsqueeze(1)
        mask[:, 0] = True  # keeps one valid key even for an empty window
        x = conv_tok + self.pos[:, :N] + lead_emb.unsqueeze(1)
        for blk in self.blocks:
            x = blk(x, mask)
        g = torch.sigmoid(self.gate(torch.cat([conv_tok, x], dim=-1)))
        tok = self.ln(g * conv_tok + (1 - g) * x)  # gated: local conv features vs. context
        return tok, mask, self.pool(tok, mask)[0]


def bucketed(n: int) -> int:
    """n rounded up to a multiple of 2^(bits(n) - 4): at most 1/8 more (770 -> 832, 12 -> 12).

    At CPU inference the beat encoder runs on this many beats (zero beats added, then dropped),
    so its tensors come in a few sizes that the allocator reuses. With a new size every batch the
    heap fragmented and each predict worker grew ~95 MB over 20,000 records."""
    step = 1 << max(n.bit_length() - 4, 0)
    return -(-n // step) * step


class BeatEncoder(nn.Module):
    """One beat (L, S) -> one token (d): strided + residual convs, mean+max pooling, a linear."""

    def __init__(self, c: EcgMoeConfig) -> None:
        super().__init__()
        (c1, c2), d = c.beat_channels, c.d_model
        self.net = nn.Sequential(_conv_bn(c.n_leads, c1, 9, 3), _conv_bn(c1, c2, 5, 2),
                                 ResBlock(c2, 5), _conv_bn(c2, d, 3, 2))
        self.out = nn.Linear(2 * d, d)

    def forward(self, beats: Tensor) -> Tensor:
        """(n, L, S) -> (n, d)."""
        if sliced(self, beats, CPU_BEATS):
            return in_slices(self._forward, CPU_BEATS, beats)
        return self._forward(beats)

    def _forward(self, beats: Tensor) -> Tensor:
        n = beats.shape[0]
        h = self.net(row_layout(beats, bucketed(n))).flatten(2)[:n]
        return self.out(torch.cat([h.mean(-1), h.amax(-1)], dim=-1))
