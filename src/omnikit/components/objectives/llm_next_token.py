"""Next-token cross-entropy of the frozen LLM on text following the audio embeddings (input stages 2 and 3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from omnikit.components.objectives._speech import audio_embeddings, llm_forward
from omnikit.registry import param


@dataclass
class LLMNextTokenConfig:
    target: Literal["transcript", "answer"] = param(
        "transcript", "What the LLM must say after the audio: the transcript (stage 2) or the answer (stage 3)."
    )
    use_prompt: bool = param(True, "Insert the LLM's trainable prompt embeddings before the audio (stage 3).")


class LLMNextTokenObjective:
    """LLM next-token cross-entropy after [prefix][prompt embeddings][audio][assistant prefix].

    The LLM's weights stay frozen; gradients flow into whatever is trainable upstream (encoder, adapter) or
    inside the LLM's speech-side parameters (prompt embeddings). Utterances without a target (e.g. duplex
    "ignore" examples have no answer) are left out of this loss.
    """

    config_class = LLMNextTokenConfig
    inputs = ("feats",)

    def __init__(self, config: LLMNextTokenConfig, **_: Any):
        self.config = config

    def __call__(self, model: torch.nn.ModuleDict, batch: dict[str, Any]) -> dict[str, Tensor]:
        field = "text" if self.config.target == "transcript" else "answer"
        targets = batch.get(field) or []
        keep = [i for i, t in enumerate(targets) if t is not None]
        if not keep:
            zero = batch["feats"].new_zeros(())
            return {"loss": zero, "count": zero}
        if len(keep) == len(targets):
            out = llm_forward(model, batch, list(targets), self.config.use_prompt)
        else:
            emb, lens = audio_embeddings(model, batch)
            idx = torch.tensor(keep, device=emb.device)
            out = model["llm"].forward_train(
                emb[idx], lens[idx], [targets[i] for i in keep], use_prompt=self.config.use_prompt
            )
        return {"loss": out.lm_loss, "count": batch["feats"].new_tensor(float(len(keep)))}
