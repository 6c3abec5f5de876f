"""Text-token sampling in Freeze-Omni's order: temperature -> softmax -> top-k -> top-p -> draw."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Sampling:
    """How the next text token is chosen. ``greedy=True`` ignores the other fields (arg-max)."""

    temperature: float = 0.7
    top_k: int = 5
    top_p: float = 0.8
    greedy: bool = False


GREEDY = Sampling(greedy=True)
"""Arg-max decoding: deterministic, used for training answers and tests."""


def sampling_probs(logits: Tensor, sampling: Sampling) -> Tensor:
    """The distribution the sampler draws from, for 1-D ``logits`` (V,); float32.

    Order (spec §3.6): divide by the temperature (if it is not 1), softmax, keep the ``top_k`` largest
    (0 = all) and renormalise, then drop tokens whose cumulative sorted probability exceeds ``top_p``,
    always keeping the most probable token, and renormalise.
    """
    logits = logits.detach().float().reshape(-1)
    if sampling.temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {sampling.temperature}; use greedy=True for arg-max")
    if sampling.temperature != 1.0:
        logits = logits / sampling.temperature
    probs = torch.softmax(logits, dim=-1)
    if 0 < sampling.top_k < probs.numel():
        kth = torch.topk(probs, sampling.top_k).values[-1]
        probs = torch.where(probs >= kth, probs, torch.zeros_like(probs))
        probs = probs / probs.sum()
    if 0.0 < sampling.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        drop_sorted = torch.cumsum(sorted_probs, dim=0) > sampling.top_p
        drop_sorted[0] = False
        drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)
        probs = probs.masked_fill(drop, 0.0)
        probs = probs / probs.sum()
    return probs


def sample_token(logits: Tensor, sampling: Sampling, generator: torch.Generator | None = None) -> int:
    """Choose one token id from 1-D ``logits`` (V,) (or (1, V))."""
    logits = logits.reshape(-1)
    if sampling.greedy:
        return int(torch.argmax(logits).item())
    probs = sampling_probs(logits, sampling)
    if generator is not None and generator.device != probs.device:
        probs = probs.to(generator.device)
    return int(torch.multinomial(probs, 1, generator=generator).item())
