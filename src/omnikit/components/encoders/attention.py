"""Multi-head self-attention with relative sinusoidal positions, shared by full-sequence and streaming paths.

Score(i, j) = [(q_i + u) . k_j + (q_i + v) . W_pos sin(pos_i - pos_j)] / sqrt(d_k), with learned per-head
biases ``u``, ``v`` (Transformer-XL style). The position term depends only on the distance between query and
key, so a key cached during streaming scores the same as in the full forward: no absolute position counter
has to be kept, and nothing drifts or wraps however long a stream runs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoid(positions: Tensor, dim: int) -> Tensor:
    """Sinusoidal embeddings ``(N, dim)`` of (possibly negative) integer ``positions``."""
    inv = torch.exp(torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32) * (-math.log(1e4) / dim))
    ang = positions.to(torch.float32)[:, None] * inv[None, :]
    pe = torch.zeros(positions.shape[0], dim, device=positions.device)
    pe[:, 0::2] = torch.sin(ang)
    pe[:, 1::2] = torch.cos(ang[:, : dim // 2])
    return pe


class RelPositionSelfAttention(nn.Module):
    """Q/K/V/output projections, a bias-free position projection and the per-head biases ``u``/``v``."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} is not divisible by heads={heads}")
        self.dim, self.heads, self.d_k = dim, heads, dim // heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.pos = nn.Linear(dim, dim, bias=False)
        self.bias_u = nn.Parameter(torch.empty(heads, self.d_k))
        self.bias_v = nn.Parameter(torch.empty(heads, self.d_k))
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.bias_u.device.type != "meta":
            nn.init.xavier_uniform_(self.bias_u)
            nn.init.xavier_uniform_(self.bias_v)

    def _split(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.heads, self.d_k).transpose(1, 2)  # (B, H, T, d_k)

    def project_kv(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._split(self.k(x)), self._split(self.v(x))

    def forward(
        self, x: Tensor, k: Tensor, v: Tensor, q_pos: Tensor, k_pos: Tensor, mask: Tensor | None,
        dist_range: tuple[int, int] | None = None,
    ) -> Tensor:
        """Queries from ``x`` ``(B, Tq, D)`` over keys/values ``(B, H, Tk, d_k)`` at integer positions
        ``q_pos`` (Tq,) and ``k_pos`` (Tk,). ``mask``: bool ``(B|1, Tq, Tk)``, True = may attend (None = all).
        ``dist_range``: (min, max) distance that the mask allows, to bound the position table; distances
        outside it are clamped (they are masked anyway)."""
        q = self._split(self.q(x))
        dist = q_pos[:, None] - k_pos[None, :]  # (Tq, Tk)
        lo, hi = (int(dist.min()), int(dist.max())) if dist_range is None else dist_range
        dist = dist.clamp(lo, hi)
        table = self.pos(sinusoid(torch.arange(lo, hi + 1, device=x.device), self.dim).to(x.dtype))
        table = table.view(-1, self.heads, self.d_k).transpose(0, 1)  # (H, R, d_k)
        content = torch.matmul(q + self.bias_u[:, None, :], k.transpose(-1, -2))  # (B, H, Tq, Tk)
        by_dist = torch.matmul(q + self.bias_v[:, None, :], table.transpose(-1, -2))  # (B, H, Tq, R)
        index = (dist - lo).expand(by_dist.shape[0], by_dist.shape[1], -1, -1)
        position = torch.gather(by_dist, -1, index)
        scores = (content + position) / math.sqrt(self.d_k)
        if mask is not None:
            m = mask[:, None]  # (B|1, 1, Tq, Tk)
            probs = torch.softmax(scores.masked_fill(~m, float("-inf")), dim=-1).masked_fill(~m, 0.0)
        else:
            probs = torch.softmax(scores, dim=-1)
        ctx = torch.matmul(self.dropout(probs), v)  # (B, H, Tq, d_k)
        b, _, t, _ = ctx.shape
        return self.out(ctx.transpose(1, 2).reshape(b, t, self.dim))
