"""A cascade baseline speech decoder: the assistant's TTS voice reads the segment text, the codec encodes it.

Not a learned decoder: it is the reference point a trained decoder is measured against (and a way to run the
whole dialogue before any speech-decoder stage is trained). Its codec tokens are what the codec makes of the
very voice the decoders are trained to imitate, so its intelligibility is the ceiling that the codec allows a
decoder to reach on that voice, and its latency is that of a TTS engine rendering a whole segment first.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from omnikit.components.speech_decoders.layers import yield_in_chunks
from omnikit.registry import param


@dataclass
class CascadeTTSConfig:
    voice: str = param(
        "hibari:heart",
        "Voice id that reads each segment, as in the speech world (`hibari:heart` is the assistant's voice; "
        "`piper:joe`, `espeak:<accent>` also work).",
    )
    speed: float = param(1.0, "Speaking-rate factor (the speech world renders the assistant at 1.0).")
    seed: int = param(0, "Seed of the voice's delivery draws (hibari's noise), fixed so output is reproducible.")


def _device(module: nn.Module) -> torch.device:
    for t in (*module.parameters(), *module.buffers()):
        return t.device
    return torch.device("cpu")


class CascadeTTSSpeechDecoder(nn.Module):
    """Baseline (not trained): text -> assistant TTS voice -> ``codec.encode`` -> codec-token chunks.

    ``generate`` needs the segment's text and the codec, which the embeddings alone do not give it: pass them
    as ``generate(..., text=..., codec=...)`` (the session does), or bind the codec once with
    :meth:`bind_codec`. ``text_emb`` and ``hidden`` are accepted and ignored. There are no weights:
    ``forward`` returns a zero loss that needs no gradient, so a recipe with this decoder schedules no
    speech-decoder stage (output_2 / output_3).

    Audio is rendered exactly as the speech world renders the assistant's answers
    (:func:`omnikit.data.world.voices.speak`: trimmed, resampled to the codec's rate).
    """

    config_class = CascadeTTSConfig
    PARTS: dict[str, tuple[str, ...]] = {}

    def __init__(self, config: CascadeTTSConfig, *, cond_dim: int, codebook_size: int, **_: Any) -> None:
        super().__init__()
        self.config, self.cond_dim, self.codebook_size = config, cond_dim, codebook_size
        self._codec: Any = None  # a plain attribute, not a submodule: the codec's weights are not ours

    def bind_codec(self, codec: Any) -> CascadeTTSSpeechDecoder:
        """Use ``codec`` whenever ``generate`` is not handed one."""
        if int(codec.codebook_size) != self.codebook_size:
            raise ValueError(f"codec has {codec.codebook_size} codes, this decoder was built for {self.codebook_size}")
        self.__dict__["_codec"] = codec
        return self

    # ------------------------------------------------------------------ training: nothing to train
    def forward(
        self,
        text_emb: Tensor,
        text_lens: Tensor,
        hidden: Tensor | None,
        hidden_lens: Tensor | None,
        tokens: Tensor,
        token_lens: Tensor,
    ) -> dict[str, Tensor]:
        """Zero loss without gradient (a baseline has no weights); ``acc`` is 0."""
        zero = torch.zeros((), device=tokens.device)
        return {"loss": zero, "acc": zero.clone()}

    # ------------------------------------------------------------------ inference
    def render(self, text: str, sample_rate: int) -> np.ndarray:
        """The voice reading ``text`` at ``sample_rate`` (float32 mono, trimmed)."""
        from omnikit.data.world.voices import speak

        rng = np.random.default_rng(self.config.seed)
        speed = float(self.config.speed)
        return speak(self.config.voice, text, rng, sample_rate=sample_rate, speed_range=(speed, speed)).wav

    @torch.no_grad()
    def tokens_for(self, text: str, codec: Any) -> Tensor:
        """All codec tokens (1-D long) of the voice reading ``text``."""
        wav = self.render(text, int(codec.sample_rate))
        if wav.size == 0:
            return torch.zeros(0, dtype=torch.long)
        return codec.encode(torch.from_numpy(wav)[None].to(_device(codec))).reshape(-1).long().cpu()

    @torch.no_grad()
    def generate(
        self,
        text_emb: Tensor | None = None,
        hidden: Tensor | None = None,
        *,
        text: str | None = None,
        codec: Any = None,
        max_tokens: int = 1000,
        first_chunk: int = 20,
        chunk: int = 40,
        timings: dict[str, float] | None = None,
        **_: Any,
    ) -> Iterator[Tensor]:
        """Yield the segment's codec tokens in chunks of ``first_chunk``, then ``chunk`` (at most ``max_tokens``).

        ``timings`` gets ``prefill_s`` (synthesis + encoding of the whole segment), ``first_chunk_s`` (about
        zero: every token exists once the segment is rendered), ``total_s`` and ``tokens``.
        """
        codec = codec if codec is not None else self._codec
        if text is None or codec is None:
            raise ValueError(
                "cascade_tts reads text, not embeddings: call generate(..., text=<segment text>, codec=<codec>) "
                "(or bind_codec(codec) once)"
            )
        t0 = time.perf_counter()
        tokens = self.tokens_for(text, codec)[:max_tokens] if text.strip() else torch.zeros(0, dtype=torch.long)
        yield from yield_in_chunks(tokens, first_chunk, chunk, t0, time.perf_counter(), timings)
