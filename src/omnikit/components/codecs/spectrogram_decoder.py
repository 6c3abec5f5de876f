"""A small learned decoder: codec token vectors -> spectral frames (log-mel), with a finite receptive field."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class _DilatedBlock(nn.Module):
    def __init__(self, dim: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)  # per position, so the receptive field stays finite
        self.conv = nn.Conv1d(dim, dim, kernel_size=3, dilation=dilation, padding=dilation)
        self.mix = nn.Conv1d(dim, dim, kernel_size=1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.drop(self.mix(torch.nn.functional.gelu(self.conv(torch.nn.functional.gelu(self.norm(x.transpose(1, 2)).transpose(1, 2))))))


class SpectrogramDecoder(nn.Module):
    """(B, N, in_dim) token vectors -> (B, N * frames_per_token, out_bins) spectral frames.

    Non-causal dilated convolutions (kernel 3): the receptive field is ``sum(dilations)`` tokens on each side,
    so a streaming window with at least that much context reproduces offline decoding exactly.
    """

    def __init__(
        self, in_dim: int, out_bins: int, frames_per_token: int, dim: int, dilations: list[int], dropout: float
    ) -> None:
        super().__init__()
        self.frames_per_token = frames_per_token
        self.out_bins = out_bins
        self.inp = nn.Linear(in_dim, dim)
        self.blocks = nn.ModuleList([_DilatedBlock(dim, d, dropout) for d in dilations])
        self.out = nn.Linear(dim, frames_per_token * out_bins)
        self.receptive_field = int(sum(dilations))

    def forward(self, x: Tensor) -> Tensor:
        h = self.inp(x).transpose(1, 2)  # (B, dim, N)
        for block in self.blocks:
            h = block(h)
        y = self.out(h.transpose(1, 2))  # (B, N, fpt * bins)
        b, n, _ = y.shape
        return y.reshape(b, n * self.frames_per_token, self.out_bins)
