"""Shared pieces of the objectives: the speech chain (encoder -> adapter) and the LLM call, memoised per batch.

Several objectives of one stage read the same forward pass (``llm_next_token`` and ``state_ce`` both need the
LLM over the audio embeddings), so results are cached in ``batch["_cache"]``, which the training module clears
for every batch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def cache(batch: dict[str, Any]) -> dict[Any, Any]:
    return batch.setdefault("_cache", {})


def encode_speech(model: torch.nn.ModuleDict, batch: dict[str, Any]) -> Any:
    """The encoder output for the batch's features (memoised)."""
    c = cache(batch)
    if "encoder" not in c:
        c["encoder"] = model["encoder"](batch["feats"], batch["feat_lens"])
    return c["encoder"]


def audio_embeddings(model: torch.nn.ModuleDict, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """Encoder -> adapter: audio embeddings at the LLM width and their valid lengths (memoised)."""
    c = cache(batch)
    if "audio_emb" not in c:
        enc = encode_speech(model, batch)
        c["audio_emb"] = model["adapter"](enc.hidden, enc.lens)
    return c["audio_emb"]


def llm_forward(
    model: torch.nn.ModuleDict, batch: dict[str, Any], targets: list[str] | None, use_prompt: bool = True
) -> Any:
    """``llm.forward_train`` over the whole batch's audio with ``targets`` (memoised per target list)."""
    c = cache(batch)
    key = ("llm", None if targets is None else tuple(targets), use_prompt)
    if key not in c:
        emb, lens = audio_embeddings(model, batch)
        c[key] = model["llm"].forward_train(emb, lens, targets, use_prompt=use_prompt)
    return c[key]


def last_llm_output(batch: dict[str, Any], use_prompt: bool = True) -> Any | None:
    """An LLM output already computed for this batch with the same prompt setting (causal attention makes the
    state logits at the audio positions independent of the targets that follow)."""
    for key, value in cache(batch).items():
        if isinstance(key, tuple) and key and key[0] == "llm" and key[2] == use_prompt:
            return value
    return None
