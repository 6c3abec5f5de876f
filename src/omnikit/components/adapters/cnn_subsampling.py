"""Causal CNN adapter: encoder frames (25 Hz) -> LLM embeddings (12.5 Hz), Freeze-Omni's input adapter."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from omnikit.registry import param


@dataclass
class CNNSubsamplingConfig:
    kernel_size: int = param(5, "Causal Conv1d kernel (frames of left context = kernel_size - 1).")
    stride: int = param(2, "Conv stride: the downsampling factor (2: 25 Hz -> 12.5 Hz).")
    hidden_dim: int = param(0, "Conv output channels; 0 = 2 * in_dim (paper: 1024 -> 2048).")
    norm_eps: float = param(1e-3, "LayerNorm epsilon.")


@dataclass
class CNNSubsamplingState:
    """Per-session state: the input frames not yet consumed as window starts (zeros before the stream)."""

    cache: Tensor | None = None  # (B, <= kernel_size - 1 + stride - 1, in_dim)


class CNNSubsamplingAdapter(nn.Module):
    """Causal Conv1d (kernel k, stride s) -> LayerNorm -> GELU -> Linear(hidden -> out_dim).

    The input is left-padded with ``k - 1`` zero frames, so output ``n`` sees input frames
    ``[s*n - k + 1, s*n]`` and ``T`` frames give ``ceil(T / s)`` outputs. Streaming keeps the input frames
    that later windows still need, so any chunk sizes (4 encoder frames per 160 ms give 2 embeddings)
    reproduce the offline output exactly. Paper size (1024 -> 3584): 17,835,520 parameters.
    """

    config_class = CNNSubsamplingConfig

    def __init__(self, config: CNNSubsamplingConfig, in_dim: int, out_dim: int, **_: object):
        super().__init__()
        if config.kernel_size < config.stride or config.stride < 1:
            raise ValueError(f"need kernel_size >= stride >= 1, got {config.kernel_size} and {config.stride}")
        self.config = config
        self.in_dim, self.out_dim = in_dim, out_dim
        hidden = config.hidden_dim or 2 * in_dim
        self.conv = nn.Conv1d(in_dim, hidden, config.kernel_size, stride=config.stride)
        self.norm = nn.LayerNorm(hidden, eps=config.norm_eps)
        self.proj = nn.Linear(hidden, out_dim)

    def _project(self, x: Tensor) -> Tensor:
        """``(B, L, in_dim)`` already holding its left context -> ``(B, (L-k)//s + 1, out_dim)``."""
        y = self.conv(x.transpose(1, 2)).transpose(1, 2)
        return self.proj(F.gelu(self.norm(y)))

    def forward(self, x: Tensor, lens: Tensor) -> tuple[Tensor, Tensor]:
        x = F.pad(x, (0, 0, self.config.kernel_size - 1, 0))
        y = self._project(x)
        out_lens = torch.div(lens + self.config.stride - 1, self.config.stride, rounding_mode="floor")
        return y, out_lens.clamp_max(y.shape[1])

    def init_state(self) -> CNNSubsamplingState:
        return CNNSubsamplingState()

    def forward_chunk(self, x: Tensor, state: CNNSubsamplingState) -> tuple[Tensor, CNNSubsamplingState]:
        """``(B, t, in_dim)`` -> ``(B, t', out_dim)`` (t' may be 0 for tiny chunks) and the new state."""
        k, s = self.config.kernel_size, self.config.stride
        cache = state.cache
        if cache is None:
            cache = x.new_zeros(x.shape[0], k - 1, x.shape[2])
        seq = torch.cat([cache, x], dim=1)
        n_out = max(0, (seq.shape[1] - k) // s + 1)
        y = self._project(seq) if n_out > 0 else x.new_zeros(x.shape[0], 0, self.out_dim)
        return y, CNNSubsamplingState(cache=seq[:, s * n_out :].detach())
