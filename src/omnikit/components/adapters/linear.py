"""Linear adapter with optional frame stacking: the simplest bridge from encoder to LLM width."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from omnikit.registry import param


@dataclass
class LinearAdapterConfig:
    stack: int = param(1, "Consecutive encoder frames concatenated per output (downsampling factor).")
    hidden_dim: int = param(0, "0 = one Linear; > 0 = Linear -> GELU -> Linear with this hidden width.")


@dataclass
class LinearAdapterState:
    """Per-session state: fewer than ``stack`` frames waiting for their group."""

    pending: Tensor | None = None


class LinearAdapter(nn.Module):
    """Stacks ``stack`` frames and projects them to the LLM width (Linear, or a 2-layer GELU MLP).

    ``T`` frames give ``floor(T / stack)`` outputs: an incomplete final group is dropped, offline and in
    streaming alike (the 4 frames per 160 ms chunk divide evenly for stack 1, 2 or 4).
    """

    config_class = LinearAdapterConfig

    def __init__(self, config: LinearAdapterConfig, in_dim: int, out_dim: int, **_: object):
        super().__init__()
        if config.stack < 1:
            raise ValueError(f"stack must be >= 1, got {config.stack}")
        self.config = config
        self.in_dim, self.out_dim = in_dim, out_dim
        width = in_dim * config.stack
        if config.hidden_dim > 0:
            self.proj = nn.Sequential(
                nn.Linear(width, config.hidden_dim), nn.GELU(), nn.Linear(config.hidden_dim, out_dim)
            )
        else:
            self.proj = nn.Linear(width, out_dim)

    def _stack(self, x: Tensor) -> Tensor:
        s = self.config.stack
        n = x.shape[1] // s
        return x[:, : n * s].reshape(x.shape[0], n, x.shape[2] * s)

    def forward(self, x: Tensor, lens: Tensor) -> tuple[Tensor, Tensor]:
        y = self.proj(self._stack(x))
        return y, torch.div(lens, self.config.stack, rounding_mode="floor").clamp_max(y.shape[1])

    def init_state(self) -> LinearAdapterState:
        return LinearAdapterState()

    def forward_chunk(self, x: Tensor, state: LinearAdapterState) -> tuple[Tensor, LinearAdapterState]:
        seq = x if state.pending is None else torch.cat([state.pending, x], dim=1)
        n = seq.shape[1] // self.config.stack * self.config.stack
        return self.proj(self._stack(seq)), LinearAdapterState(pending=seq[:, n:].detach())
