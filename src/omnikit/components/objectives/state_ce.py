"""Chunk-level duplex state cross-entropy on the LLM's state head (input stage 3, multi-task)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from omnikit.components.objectives._speech import audio_embeddings, last_llm_output, llm_forward
from omnikit.interfaces import CHUNK_FRAMES
from omnikit.registry import param

IGNORE = -100


@dataclass
class StateCEConfig:
    class_weights: list[float] | None = param(None, "Per-state loss weights (e.g. [1, 5, 1]); None = equal.")
    positions_per_chunk: int = param(
        0, "LLM audio positions per 160 ms label chunk; 0 = infer from feature and embedding lengths."
    )


def label_positions(labels: Tensor, audio_lens: Tensor, per_chunk: int) -> tuple[Tensor, Tensor, Tensor]:
    """Where each chunk label lives: the last audio position of its chunk (Freeze-Omni labels only that frame).

    Returns ``(batch_idx, position, label)`` for every labelled chunk whose last position is inside the audio.
    """
    b_idx, c_idx = torch.nonzero(labels != IGNORE, as_tuple=True)
    pos = (c_idx + 1) * per_chunk - 1
    inside = pos < audio_lens.to(pos.device)[b_idx]
    return b_idx[inside], pos[inside], labels[b_idx[inside], c_idx[inside]]


class StateCEObjective:
    """Cross-entropy of the LLM state head (listen / respond / ignore) at the end of each 160 ms chunk.

    Labels come from ``batch["state_labels"]`` (one per chunk, ``-100`` = no label), as the duplex cuts carry
    them; a batch without labels contributes a zero loss. The state head reads the frozen LLM's last hidden state at the last audio position of each chunk.
    Also logs ``acc``, the chunk accuracy, and ``end_acc``, the accuracy on non-listen chunks.
    """

    config_class = StateCEConfig
    inputs = ("feats",)

    def __init__(self, config: StateCEConfig, **_: Any):
        self.config = config

    def __call__(self, model: torch.nn.ModuleDict, batch: dict[str, Any]) -> dict[str, Tensor]:
        labels = batch.get("state_labels")
        if labels is None:  # e.g. a batch of dialogue cuts only, in a stage that mixes in duplex cuts
            labels = torch.full((len(batch["cut_ids"]), 1), IGNORE, dtype=torch.long)
        out = last_llm_output(batch)
        emb, lens = audio_embeddings(model, batch)
        if out is None:
            out = llm_forward(model, batch, None)
        logits = out.state_logits  # (B, T_audio, S)
        per_chunk = self.config.positions_per_chunk or max(
            1, round(CHUNK_FRAMES * int(lens.max()) / int(batch["feat_lens"].max()))
        )
        b, pos, y = label_positions(labels.to(logits.device), lens, per_chunk)
        if y.numel() == 0:
            zero = logits.sum() * 0.0
            return {"loss": zero}
        picked = logits[b, pos].float()
        weight = None
        if self.config.class_weights is not None:
            weight = torch.tensor(self.config.class_weights, dtype=picked.dtype, device=picked.device)
        loss = F.cross_entropy(picked, y, weight=weight)
        pred = picked.argmax(-1)
        metrics = {"loss": loss, "acc": (pred == y).float().mean()}
        ends = y != 0
        if ends.any():
            metrics["end_acc"] = (pred[ends] == y[ends]).float().mean()
        return metrics
