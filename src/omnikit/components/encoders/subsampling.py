"""Conv2d 4x subsampling shared by the built-in encoders (no padding), with streaming left context.

Two 3x3 stride-2 convolutions need 3 frames of left context per chunk. The offline path prepends 3 zero frames
to the utterance and the streaming path starts from 3 zero frames then carries the last 3 input frames, so
``n * 4k`` input frames give exactly ``n * k`` output frames either way and the outputs are identical.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

LEFT_CONTEXT = 3
"""Input frames of left context that the two 3x3/stride-2 convolutions need (zeros at utterance start)."""
RATE = 4


def subsampled_lengths(lens: Tensor) -> Tensor:
    """Output frames for ``lens`` input frames once ``LEFT_CONTEXT`` zero frames are prepended (about lens/4)."""
    first = (lens + LEFT_CONTEXT - 3) // 2 + 1
    return ((first - 3) // 2 + 1).clamp_min(0)


class Conv2dSubsampling4(nn.Module):
    """Conv2d(1->C,3,s2) -> ReLU -> Conv2d(C->C,3,s2) -> ReLU -> Linear(C * F' -> out_dim)."""

    def __init__(self, input_dim: int, channels: int, out_dim: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, 3, 2), nn.ReLU(), nn.Conv2d(channels, channels, 3, 2), nn.ReLU()
        )
        freq = ((input_dim - 1) // 2 - 1) // 2
        if freq <= 0:
            raise ValueError(f"input_dim={input_dim} is too small for 4x conv subsampling")
        self.out = nn.Linear(channels * freq, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, F)`` already carrying its left context -> ``(B, (T-3)//4-ish, out_dim)``; no padding added."""
        y = self.conv(x.unsqueeze(1))  # (B, C, T', F')
        b, c, t, f = y.shape
        return self.out(y.transpose(1, 2).reshape(b, t, c * f))

    def forward_offline(self, feats: Tensor) -> Tensor:
        """Whole utterances: prepend the zero left context, as streaming starts from it."""
        pad = feats.new_zeros(feats.shape[0], LEFT_CONTEXT, feats.shape[2])
        return self.forward(torch.cat([pad, feats], dim=1))

    def forward_chunk(self, feats: Tensor, tail: Tensor) -> tuple[Tensor, Tensor]:
        """One chunk ``(B, t, F)`` (t a multiple of 4) with the previous ``tail`` ``(B, 3, F)`` -> output
        ``(B, t/4, out_dim)`` and the new tail."""
        x = torch.cat([tail, feats], dim=1)
        return self.forward(x), x[:, -LEFT_CONTEXT:].detach()
