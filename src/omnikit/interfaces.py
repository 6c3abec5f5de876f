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
    """The frozen LLM with the speech-side trainables it owns (prompt embeddings, state head), and the
    incremental API a session drives. These are the members that the session, the probes, the objectives, the
    connector adapter and the speech decoders' caches call; ``omnikit.components.llms.hf_causal_lm`` is the
    reference implementation.

    A conversation ``state`` is an explicit value owned by the caller (its KV cache, its open role, the last
    hidden state), never an attribute of the LLM. ``sampling`` is an
    ``omnikit.components.llms.sampling.Sampling`` (greedy when left out); ``generator`` a ``torch.Generator``.
    """

    hidden_size: int
    """Width of the LLM's embeddings and hidden states (an adapter's ``out_dim``, a decoder's ``cond_dim``)."""
    num_states: int
    """Outputs of the state head (``listen``, ``respond``, ``ignore`` by default)."""
    tokenizer: Any
    """The Hugging Face tokenizer (``decode``, ``eos_token_id``, ``apply_chat_template``)."""
    segments: Any
    """The chat template split into token-id pieces (``omnikit.components.llms.chat_template.ChatSegments``)."""
    config: Any
    """The component's config; callers read ``config.system_prompt``, the default system prompt."""
    llm: torch.nn.Module
    """The frozen backbone itself, for batched teacher-forced passes (``inputs_embeds=...``)."""
    state_head: torch.nn.Module
    """Linear head from a hidden state to ``num_states`` logits (trained in stage 3)."""
    is_meta: bool
    """True when built without weights (architecture only): a dry run can show it, training refuses it."""

    @property
    def device(self) -> torch.device:
        """Where the frozen weights live (inputs are moved there)."""

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the frozen weights (audio embeddings are cast to it)."""

    def fingerprint(self) -> str:
        """Digest of the frozen weights; equal before and after every training stage."""

    def tokenize(self, text: str) -> list[int]:
        """Token ids of plain text, no special tokens added."""

    def embed(self, ids: Tensor | list[int]) -> Tensor:
        """The frozen input embeddings of token ids: ``(..., hidden_size)``."""

    def is_end_of_turn(self, token_id: int) -> bool:
        """True for a token that ends the assistant turn."""

    def new_conversation(self, system_prompt: str | None = None) -> Any:
        """A fresh conversation state with the system prompt prefilled (None: ``config.system_prompt``)."""

    def fork(self, state: Any) -> Any:
        """An independent copy of a conversation state (to listen to a barge-in while speaking)."""

    def start_user_turn(self, state: Any) -> None:
        """Open a user turn: its prefix and the prompt embeddings, before the first audio chunk."""

    def append_audio(self, state: Any, audio_emb: Tensor) -> Tensor:
        """Append ``(1, n, hidden_size)`` audio embeddings; the state-head probabilities at the chunk's end."""

    def append_text_user_turn(self, state: Any, text: str, with_prompt: bool = False) -> None:
        """A whole written user turn (the text path); prompt embeddings only if ``with_prompt``."""

    def start_assistant(self, state: Any, sampling: Any = ..., generator: Any = None) -> tuple[int, Tensor]:
        """Close the user turn, open the assistant's; its first token and the ``(hidden_size,)`` hidden behind it."""

    def step(self, state: Any, token_id: int, sampling: Any = ..., generator: Any = None) -> tuple[int, Tensor]:
        """Feed the previous answer token; the next token and the hidden state that produced it."""

    def generate(self, state: Any, max_new_tokens: int = 64, sampling: Any = ...,
                 generator: Any = None) -> tuple[list[int], Tensor]:
        """A whole assistant turn: its token ids (no end of turn) and their hidden states ``(n, hidden_size)``."""

    def chat(self, text: str, max_new_tokens: int = 64, sampling: Any = ..., system_prompt: str | None = None,
             generator: Any = None) -> str:
        """Written question to written answer in one turn (training answers, the written-question baseline)."""

    def forward_train(self, audio_emb: Tensor, audio_lens: Tensor, targets: list[str] | None,
                      system_prompt: str | None = None, use_prompt: bool = True) -> Any:
        """Teacher-forced batch: an output with ``lm_loss``, ``audio_hidden``, ``state_logits`` and
        ``n_target_tokens`` (see ``hf_causal_lm.LLMTrainOutput``)."""


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
