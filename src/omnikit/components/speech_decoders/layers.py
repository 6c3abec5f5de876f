"""Transformer building blocks for the speech decoder: pre-norm RMSNorm + RoPE + SwiGLU layers with
explicit boolean attention masks and explicit key/value prefixes.

Written for the NAR/AR decoder, where layer ``l`` of the shared stack must attend to key/value pairs written
by layer ``l`` of the prefix stack, and where incremental generation appends to a per-layer cache. Masks are
always explicit (``True`` = may attend), so no attention kernel can silently switch to causal or unmasked
attention (spec §4.4, implementation warning).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

KV = tuple[Tensor, Tensor]
"""Post-RoPE keys and values, each (B, heads, L, head_dim)."""


class RMSNorm(nn.Module):
    """Root-mean-square layer norm with a learned scale (no bias)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class RotaryEmbedding(nn.Module):
    """Rotary position tables computed on the fly for arbitrary (B, L) integer positions."""

    def __init__(self, head_dim: int, theta: float = 10000.0) -> None:
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, positions: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """``positions``: (B, L) -> ``cos``, ``sin``: (B, 1, L, head_dim), broadcast over heads."""
        freqs = positions.to(self.inv_freq.dtype)[..., None] * self.inv_freq  # (B, L, hd/2)
        emb = torch.cat([freqs, freqs], dim=-1)[:, None]
        return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate-half RoPE on (B, heads, L, head_dim)."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class KVCache:
    """A growable per-layer key/value buffer for incremental decoding (batch 1 or fixed batch)."""

    def __init__(self, capacity: int = 256) -> None:
        self.capacity = max(1, capacity)
        self.k: Tensor | None = None
        self.v: Tensor | None = None
        self.length = 0

    def append(self, k: Tensor, v: Tensor) -> KV:
        """Write (B, h, n, hd) at the end; return views of everything written so far."""
        n = k.shape[2]
        if self.k is None:
            b, h, _, hd = k.shape
            self.capacity = max(self.capacity, n)
            self.k = k.new_empty(b, h, self.capacity, hd)
            self.v = v.new_empty(b, h, self.capacity, hd)
        assert self.v is not None
        if self.length + n > self.capacity:
            self.capacity = max(2 * self.capacity, self.length + n)
            grown_k = self.k.new_empty(*self.k.shape[:2], self.capacity, self.k.shape[3])
            grown_v = self.v.new_empty(*self.v.shape[:2], self.capacity, self.v.shape[3])
            grown_k[:, :, : self.length] = self.k[:, :, : self.length]
            grown_v[:, :, : self.length] = self.v[:, :, : self.length]
            self.k, self.v = grown_k, grown_v
        self.k[:, :, self.length : self.length + n] = k
        self.v[:, :, self.length : self.length + n] = v
        self.length += n
        return self.k[:, :, : self.length], self.v[:, :, : self.length]


class Attention(nn.Module):
    """Multi-head self-attention (no biases) that may also attend to a K/V prefix or a cache."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads, self.head_dim, self.dropout = heads, dim // heads, dropout
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.o_proj = nn.Linear(dim, dim, bias=False)

    def _split(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.head_dim).transpose(1, 2)

    def kv(self, x: Tensor, cos: Tensor, sin: Tensor) -> KV:
        """Only the post-RoPE keys and values of ``x`` (when nothing reads this layer's output)."""
        return apply_rope(self._split(self.k_proj(x)), cos, sin), self._split(self.v_proj(x))

    def forward(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        mask: Tensor | None,
        past: KV | None = None,
        cache: KVCache | None = None,
    ) -> tuple[Tensor, KV]:
        """``mask``: bool (B, 1, L, past+L), True = attend; None = attend to everything.

        Returns the output and this call's own post-RoPE (k, v), which a prefix layer hands to the decoder.
        """
        q = apply_rope(self._split(self.q_proj(x)), cos, sin)
        k, v = own = self.kv(x, cos, sin)
        if cache is not None:
            k, v = cache.append(k, v)
        elif past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        b, _, n, _ = out.shape
        return self.o_proj(out.transpose(1, 2).reshape(b, n, -1)), own


class SwiGLU(nn.Module):
    """Gated SiLU feed-forward network (LLaMA MLP)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    """Pre-norm transformer layer: x + Attn(RMSNorm(x)); x + MLP(RMSNorm(x))."""

    def __init__(
        self, dim: int, heads: int, ffn_dim: int, dropout: float = 0.0, attention_dropout: float = 0.0,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.input_norm = RMSNorm(dim, eps)
        self.attn = Attention(dim, heads, attention_dropout)
        self.post_attn_norm = RMSNorm(dim, eps)
        self.mlp = SwiGLU(dim, ffn_dim)
        self.drop = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        mask: Tensor | None,
        past: KV | None = None,
        cache: KVCache | None = None,
    ) -> tuple[Tensor, KV]:
        h, own = self.attn(self.input_norm(x), cos, sin, mask, past=past, cache=cache)
        x = x + self.drop(h)
        x = x + self.drop(self.mlp(self.post_attn_norm(x)))
        return x, own

    def kv(self, x: Tensor, cos: Tensor, sin: Tensor) -> KV:
        """This layer's keys and values for input ``x``, skipping attention and MLP."""
        return self.attn.kv(self.input_norm(x), cos, sin)


def padding_mask(lens: Tensor, length: int) -> Tensor:
    """(B,) valid lengths -> (B, length) bool, True at valid positions."""
    return torch.arange(length, device=lens.device)[None, :] < lens[:, None]


def no_empty_rows(mask: Tensor) -> Tensor:
    """Let fully masked query rows (padding) attend everywhere so SDPA yields no NaN; their outputs are
    never read by valid positions."""
    return mask | ~mask.any(dim=-1, keepdim=True)


def yield_in_chunks(tokens: Tensor, first_chunk: int, chunk: int, t0: float, t_prefill: float,
                    timings: dict[str, float] | None) -> Iterator[Tensor]:
    """Stream a whole segment's codec tokens as ``first_chunk``, then ``chunk``-sized pieces (decoders that
    predict the segment in one pass), filling ``timings`` (``prefill_s``, ``first_chunk_s``, ``total_s``,
    ``tokens``) as the autoregressive decoder does."""
    if timings is not None:
        timings["prefill_s"] = t_prefill - t0
    start, size = 0, first_chunk
    while start < tokens.numel():
        if start == 0 and timings is not None:
            timings["first_chunk_s"] = time.perf_counter() - t_prefill
        yield tokens[start : start + size]
        start, size = start + size, chunk
    if timings is not None:
        timings["total_s"] = time.perf_counter() - t0
        timings["tokens"] = float(tokens.numel())
