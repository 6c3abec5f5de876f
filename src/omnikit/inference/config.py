"""Inference settings: the recipe's ``inference`` section."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omnikit.components.llms.sampling import Sampling
from omnikit.registry import param
from omnikit.registry.fields import config_from_mapping


@dataclass
class InferenceConfig:
    """How a session samples text and speech (defaults: the Freeze-Omni server's, spec §8)."""

    temperature: float = param(0.7, "LLM sampling temperature.")
    top_k: int = param(5, "LLM top-k (0 = off).")
    top_p: float = param(0.8, "LLM top-p (1.0 = off).")
    greedy: bool = param(False, "Greedy LLM decoding (overrides temperature/top-k/top-p; used by evaluation).")
    max_answer_tokens: int = param(128, "Cap on an answer's LLM tokens.")
    system_prompt: str | None = param(None, "System prompt; None: the LLM slot's default.")
    decoder_top_k: int = param(2, "Speech decoder top-k over codec tokens.")
    decoder_repetition_penalty: float = param(1.0, "Speech decoder repetition penalty (1.0 = off).")
    decoder_max_tokens: int = param(1000, "Cap on codec tokens per text segment.")
    first_chunk: int = param(20, "Codec tokens in the first speech chunk of a segment (small: fast first PCM).")
    chunk: int = param(40, "Codec tokens per later speech chunk.")
    codec_context: int = param(10, "Left/right codec-token context of the streaming codec decoder.")
    chunk_ms: float = param(160.0, "Input chunk (ms); the encoder consumes 16 fbank frames per 160 ms.")
    seed: int = param(0, "Seed of the session's sampling generator.")

    @classmethod
    def from_mapping(cls, values: Any) -> InferenceConfig:
        return config_from_mapping(cls, values, "inference")

    def sampling(self) -> Sampling:
        if self.greedy:
            return Sampling(greedy=True)
        return Sampling(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p)
