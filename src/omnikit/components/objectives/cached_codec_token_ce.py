"""Codec-token loss of the speech decoder with the frozen LLM's conditioning cached per text.

The same training signal as ``codec_token_ce`` (the decoder's own loss on the codec tokens of the assistant
audio, conditioned on the text's frozen token embeddings and optionally the LLM's teacher-forced hidden states),
but the conditioning of each answer is computed once and then read from a
:class:`~omnikit.components.speech_decoders.conditioning_cache.ConditioningCache` keyed by the LLM fingerprint
and the text: with ``use_hidden`` the LLM is not run at every step. Works with any speech decoder; a decoder that
declares ``accepts_token_weights`` (``nar_duration``) also receives each token's character count, the prior its
``alignment: uniform`` mode splits frames by; one that declares ``accepts_texts`` / ``accepts_token_features``
receives the spoken texts / the codec's continuous features of the audio (see ``decoder_extras``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from omnikit.components.objectives.codec_token_ce import codec_targets, decoder_extras, pad_sequences
from omnikit.components.speech_decoders.conditioning_cache import ConditioningCache
from omnikit.registry import param


@dataclass
class CachedCodecTokenCEConfig:
    use_hidden: bool = param(
        False, "Also feed the LLM's teacher-forced last hidden states of the text (cached like the embeddings)."
    )
    cache_dir: str | None = param(
        None, "Directory for cached conditioning (safetensors per text, shared across runs); None: memory only."
    )
    max_items: int = param(200_000, "Entries kept in memory at most (least recently used out first).")


class CachedCodecTokenCEObjective:
    """Teacher-forced speech-decoder loss on assistant-voice audio, with cached frozen-LLM conditioning.

    Logs the decoder's extra scalar metrics too (``nar_duration``: ``ce``, ``duration_loss``, ``align_loss``)
    and the cache's hit rate.
    """

    config_class = CachedCodecTokenCEConfig
    inputs = ("wav",)

    def __init__(self, config: CachedCodecTokenCEConfig, **_: Any):
        self.config = config
        self.cache = ConditioningCache(config.cache_dir, config.max_items)

    def __call__(self, model: torch.nn.ModuleDict, batch: dict[str, Any]) -> dict[str, Tensor]:
        texts = list(batch["text"])
        tokens, token_lens = codec_targets(model["codec"], batch["wav"], batch["wav_lens"])
        questions = batch.get("question") or [None] * len(texts)
        entries = self.cache.fetch(model["llm"], texts, self.config.use_hidden, questions)
        decoder = model["speech_decoder"]
        param0 = next(decoder.parameters(), None)
        dtype = param0.dtype if param0 is not None else torch.float32
        dev = tokens.device
        text_emb, text_lens = pad_sequences([e["text_emb"].to(dev, dtype) for e in entries])
        hidden = hidden_lens = None
        if self.config.use_hidden:
            hidden, hidden_lens = pad_sequences([e["hidden"].to(dev, dtype) for e in entries])
        extra: dict[str, Any] = {}
        if getattr(decoder, "accepts_token_weights", False):
            extra["token_weights"] = pad_sequences([e["weights"].to(dev)[:, None] for e in entries])[0][..., 0]
        extra.update(decoder_extras(decoder, model["codec"], texts, batch["wav"], tokens))
        out = decoder(text_emb, text_lens, hidden, hidden_lens, tokens, token_lens, **extra)
        metrics = {k: v.detach() for k, v in out.items() if k != "loss" and isinstance(v, Tensor) and v.dim() == 0}
        total = self.cache.hits + self.cache.misses
        metrics["cache_hit_rate"] = torch.tensor(self.cache.hits / max(total, 1))
        return {"loss": out["loss"], **metrics}
