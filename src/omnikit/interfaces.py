"""The contracts between plugin kinds.

Every component is a class registered under an entry-point group (see ``omnikit.registry``). It declares a
dataclass ``config_class`` whose fields are its recipe ``args``, and is built as
``cls(config, **context)`` where ``context`` carries the sizes that flow from its neighbours at build time
(recipes never repeat them):

=================  ==========================================================================
kind               build context (keyword arguments)
=================  ==========================================================================
encoder            ``input_dim`` (feature bins, 80)
adapter            ``in_dim`` (encoder.output_dim), ``out_dim`` (llm.hidden_size), and the built ``encoder`` and
                   ``llm`` modules (a connector reads the CTC head and the tokenizer; keep them unregistered)
llm                none
speech_decoder     ``cond_dim`` (llm.hidden_size), ``codebook_size`` (codec.codebook_size)
codec              none
duplex_policy      none
vad                none
objective          none
dataset            none
=================  ==========================================================================

The Protocols below say what each kind provides. Streaming state is always an explicit value owned by the
caller (a session), never an attribute of the module: that is what lets one model serve many users.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

SAMPLE_RATE = 16_000
"""Input audio rate (Hz) of the speech input path."""
FEATURE_DIM = 80
"""Kaldi fbank bins fed to encoders."""
CHUNK_FRAMES = 16
"""Fbank frames (10 ms each) per streaming input chunk: 160 ms."""
STATES = ("listen", "respond", "ignore")
"""Default duplex states predicted by the LLM state head, in index order."""


@dataclass
class EncoderOutput:
    hidden: Tensor  # (B, T', D)
    lens: Tensor  # (B,) valid frames of ``hidden``
    ctc_logits: Tensor | None = None  # (B, T', V) when the encoder has a CTC head


@runtime_checkable
class Encoder(Protocol):
    output_dim: int
    ctc_vocab_size: int  # 0 when there is no CTC head

    def forward(self, feats: Tensor, lens: Tensor) -> EncoderOutput:
        """Full-utterance forward with the training chunk mask. ``feats``: (B, T, 80)."""

    def init_state(self) -> Any:
        """A fresh streaming state (bounded caches)."""

    def forward_chunk(self, feats: Tensor, state: Any) -> tuple[Tensor, Any]:
        """One streaming chunk ``(1, t, 80)`` -> ``(1, t', D)`` and the new state."""


@runtime_checkable
class Adapter(Protocol):
    def forward(self, x: Tensor, lens: Tensor) -> tuple[Tensor, Tensor]:
        """(B, T, in_dim), (B,) -> (B, T'', out_dim), (B,)."""

    def init_state(self) -> Any: ...

    def forward_chunk(self, x: Tensor, state: Any) -> tuple[Tensor, Any]:
        """One streaming chunk. A chunk may give no embedding (``t'' = 0``): a CTC connector emits only when a
        word closes; the session then re-reads the LLM state at its newest position."""


@runtime_checkable
class Codec(Protocol):
    sample_rate: int
    frame_rate: float  # tokens per second
    codebook_size: int

    def encode(self, wav: Tensor) -> Tensor:
        """(B, samples) float in [-1, 1] at ``sample_rate`` -> (B, N) long tokens."""

    def decode(self, tokens: Tensor) -> Tensor:
        """(B, N) long -> (B, samples) float."""

    def streaming_decoder(self, first_chunk: int = 20, chunk: int = 40, context: int = 10) -> Any:
        """An object with ``push(tokens: Tensor (N,)) -> Tensor pcm`` and ``flush() -> Tensor pcm``."""

    def reconstruction_loss(self, wav: Tensor) -> dict[str, Tensor]:
        """Training losses for a batch of audio (B, samples); ``{"loss": ..., <parts>...}``."""

    def fit_from_data(self, wavs: Iterable[Tensor]) -> None:
        """Optional non-gradient initialisation (e.g. k-means codebook) before gradient training."""


@runtime_checkable
class SpeechDecoder(Protocol):
    def forward(
        self,
        text_emb: Tensor,
        text_lens: Tensor,
        hidden: Tensor | None,
        hidden_lens: Tensor | None,
        tokens: Tensor,
        token_lens: Tensor,
    ) -> dict[str, Tensor]:
        """Teacher-forced codec-token CE. ``text_emb``/``hidden``: (B, N, cond_dim) from the frozen LLM
        (frozen token embeddings of the segment / last-layer hidden states); ``tokens``: (B, T) codec ids.
        Returns ``{"loss": ..., "acc": ...}``."""

    def generate(self, text_emb: Tensor, hidden: Tensor | None, **sampling: Any) -> Iterator[Tensor]:
        """Yield codec-token chunks (1-D long tensors) for one segment, until EOS."""


class LLM(Protocol):
    """The frozen LLM with the speech-side trainables it owns (prompt embeddings, state head).

    See ``omnikit.components.llms.hf_causal_lm`` for the full incremental API.
    """

    hidden_size: int
    num_states: int

    def embed(self, ids: Tensor) -> Tensor: ...

    def fingerprint(self) -> str:
        """Digest of the frozen weights; equal before and after every training stage."""


class VAD(Protocol):
    sample_rate: int
    window: int  # samples per decision

    def init_state(self) -> Any: ...

    def speech_prob(self, pcm: Tensor, state: Any) -> tuple[float, Any]:
        """Speech probability of one window of ``window`` samples."""


class Objective(Protocol):
    """A loss over a batch. ``model`` is the ``torch.nn.ModuleDict`` of built slots."""

    def __call__(self, model: torch.nn.ModuleDict, batch: dict[str, Any]) -> dict[str, Tensor]:
        """Return ``{"loss": scalar, <metric>: scalar, ...}``."""
