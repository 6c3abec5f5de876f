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

A Protocol declares the members omnikit's code calls; the registry checks every built component against its
kind's Protocol (:func:`contract_gaps`, listed in :data:`KIND_PROTOCOLS`) and refuses one that lacks a member.
Hooks that the code reads only when present (``getattr``/``hasattr``) are not Protocol members: each Protocol's
docstring describes them and :data:`OPTIONAL_MEMBERS` names them. ``omnikit.testing`` checks behaviour
(shapes, streaming equals offline, explicit state, state-dict round trips) on top of this.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
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
    """Fbank features -> frames at the encoder rate (+ CTC logits), full-utterance and chunk by chunk.

    Optional members (:data:`OPTIONAL_MEMBERS`): ``ctc_head``, a module from ``output_dim`` to CTC logits (the
    ``ctc_connector`` adapter reads it); ``cmvn``, a module with ``load_(stats)`` that the training runner fills
    with the global CMVN statistics of the training data.
    """

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
    """Encoder frames -> LLM-width embeddings, full-sequence and chunk by chunk."""

    def forward(self, x: Tensor, lens: Tensor) -> tuple[Tensor, Tensor]:
        """(B, T, in_dim), (B,) -> (B, T'', out_dim), (B,)."""

    def init_state(self) -> Any:
        """A fresh streaming state (the frames a chunk boundary leaves pending)."""

    def forward_chunk(self, x: Tensor, state: Any) -> tuple[Tensor, Any]:
        """One streaming chunk ``(1, t, in_dim)`` -> ``(1, t'', out_dim)`` and the new state. A chunk may give no embedding (``t'' = 0``): a CTC connector emits only when a
        word closes; the session then re-reads the LLM state at its newest position."""


@runtime_checkable
class Codec(Protocol):
    """Waveform <-> one stream of discrete tokens, with a streaming decoder.

    Optional members (:data:`OPTIONAL_MEMBERS`), needed only when a stage trains the codec:
    ``reconstruction_loss(wav: Tensor (B, samples)) -> dict[str, Tensor]``, training losses for a batch of audio
    (``{"loss": ..., <parts>...}``, read by the ``codec_reconstruction`` objective), and
    ``fit_from_data(wavs: Iterable[Tensor]) -> None``, a non-gradient initialisation (e.g. a k-means codebook)
    that the runner calls before gradient training when the stage trains the codec whole. For decoders that
    regress continuous targets (``nar_duration`` with ``target: features``): ``token_features(wav: Tensor
    (B, samples)) -> Tensor (B, N, D)``, the normalised continuous vector behind each token ``encode`` gives, and
    ``nearest_tokens(features: Tensor (B, N, D)) -> Tensor (B, N)``, the ids of the nearest codebook entries
    (so ``nearest_tokens(token_features(wav)) == encode(wav)``).
    """

    sample_rate: int
    frame_rate: float  # tokens per second
    codebook_size: int

    def encode(self, wav: Tensor) -> Tensor:
        """(B, samples) float in [-1, 1] at ``sample_rate`` -> (B, N) long tokens."""

    def decode(self, tokens: Tensor) -> Tensor:
        """(B, N) long -> (B, samples) float."""

    def streaming_decoder(self, first_chunk: int = 20, chunk: int = 40, context: int = 10) -> Any:
        """A new per-stream decoder: ``push(tokens: Tensor (N,)) -> Tensor pcm`` and ``flush() -> Tensor pcm``
        (the rest, and a reset). All streaming state lives in it; concatenated, its output is ``decode``'s."""


@runtime_checkable
class SpeechDecoder(Protocol):
    """LLM text embeddings (+ hidden states) of one text segment -> codec tokens.

    Optional members (:data:`OPTIONAL_MEMBERS`): ``accepts_token_weights``, true when ``forward`` takes a
    ``token_weights`` keyword (the ``cached_codec_token_ce`` objective then passes per-token loss weights);
    ``accepts_texts``, true when ``forward`` takes ``texts`` (the spoken texts, for a decoder that reads
    characters or phonemes; the codec-token objectives then pass them); ``accepts_token_features``, true when
    ``forward`` takes ``token_features`` (the codec's ``token_features`` of the target audio, for a decoder that
    regresses continuous features).
    """

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
        """Yield codec-token chunks (1-D long tensors) for one segment, until EOS. The session passes
        ``top_k``, ``repetition_penalty``, ``max_tokens``, ``first_chunk``, ``chunk``, ``generator``, ``timings``
        (a dict to fill), ``text`` and ``codec`` as keywords; accept ``**kwargs`` for those you ignore."""


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


@runtime_checkable
class VAD(Protocol):
    """Streaming speech probability, one window at a time.

    Optional member (:data:`OPTIONAL_MEMBERS`): ``threshold``, the probability at which a window counts as
    speech (the speech tracker's default when its own ``threshold`` is unset; 0.5 otherwise).
    """

    sample_rate: int
    window: int  # samples per decision

    def init_state(self) -> Any:
        """A fresh per-stream state."""

    def speech_prob(self, pcm: Tensor, state: Any) -> tuple[float, Any]:
        """Speech probability of one window of ``window`` samples, and the next state (the input state is
        left as it was)."""


@runtime_checkable
class DuplexPolicy(Protocol):
    """Per chunk of an open user turn: keep listening, respond, or drop the turn (see
    ``omnikit.components.duplex.base`` for ``Decision`` and ``TurnState``)."""

    def init_state(self) -> Any:
        """A fresh per-turn state (a ``TurnState``), owned by the session."""

    def on_chunk(self, state: Any, *, is_speech: bool, state_probs: Tensor | None, chunk_ms: float) -> Any:
        """Update ``state`` with one chunk and return a ``Decision`` (listen, respond or ignore); a terminal
        decision resets ``state`` in place for the next turn."""


@runtime_checkable
class Objective(Protocol):
    """A loss over a batch. ``model`` is the ``torch.nn.ModuleDict`` of built slots.

    Optional member (:data:`OPTIONAL_MEMBERS`): ``inputs``, the batch fields the objective needs (default
    ``("feats",)``), which tell the runner what to compute for the batch.
    """

    def __call__(self, model: torch.nn.ModuleDict, batch: dict[str, Any]) -> dict[str, Tensor]:
        """Return ``{"loss": scalar, <metric>: scalar, ...}``."""


@runtime_checkable
class Dataset(Protocol):
    """A data source: prepares its files under a folder, then hands out lhotse ``CutSet``s by part name.

    Optional member (:data:`OPTIONAL_MEMBERS`): ``parts``, the part names it provides (evaluation picks its
    parts from them).
    """

    def prepare(self, root: Path) -> None:
        """Build or check the data under ``root`` (idempotent: a finished preparation is not redone)."""

    def cuts(self, part: str, root: Path) -> Any:
        """The lhotse ``CutSet`` of one part (``"train"``, ``"dev"``, ...)."""


KIND_PROTOCOLS: dict[str, type] = {
    "encoder": Encoder,
    "adapter": Adapter,
    "llm": LLM,
    "speech_decoder": SpeechDecoder,
    "codec": Codec,
    "duplex_policy": DuplexPolicy,
    "vad": VAD,
    "objective": Objective,
    "dataset": Dataset,
}
"""Plugin kind -> the Protocol its components are checked against when the registry builds them."""

OPTIONAL_MEMBERS: dict[str, tuple[str, ...]] = {
    "encoder": ("ctc_head", "cmvn"),
    "adapter": (),
    "llm": (),
    "speech_decoder": ("accepts_token_weights", "accepts_texts", "accepts_token_features"),
    "codec": ("reconstruction_loss", "fit_from_data", "token_features", "nearest_tokens"),
    "duplex_policy": (),
    "vad": ("threshold",),
    "objective": ("inputs",),
    "dataset": ("parts",),
}
"""Plugin kind -> members the code uses only when present (described in each Protocol's docstring)."""

_OPTIONAL_METHODS = frozenset({"reconstruction_loss", "fit_from_data", "token_features", "nearest_tokens"})


def protocol_members(proto: type) -> tuple[list[str], list[str]]:
    """``(attributes, methods)`` a Protocol declares: annotated names, and its functions and properties
    (properties count as attributes; ``__call__`` as a method)."""
    attrs = list(getattr(proto, "__annotations__", {}))
    methods = []
    for name, value in vars(proto).items():
        if isinstance(value, property):
            attrs.append(name)
        elif callable(value) and (not name.startswith("_") or name == "__call__"):
            methods.append(name)
    return attrs, methods


def _lookup(obj: Any, name: str) -> tuple[bool, Any]:
    """``(present, value)`` without running properties (a meta-device build must not compute them)."""
    try:
        value = inspect.getattr_static(obj, name)
    except AttributeError:
        try:  # attributes served by __getattr__ (an nn.Module's submodules, parameters and buffers)
            value = getattr(obj, name)
        except Exception:  # noqa: BLE001 - any failure means the member is not there
            return False, None
    if isinstance(value, property):
        return True, None
    return True, getattr(obj, name) if callable(value) else value


def contract_gaps(obj: Any, kind: str) -> list[str]:
    """What ``obj`` lacks of the ``kind`` contract: ``"name"`` for a missing member, ``"name (not callable)"``
    for a declared method (or a present optional method) that is not callable. Empty when it conforms."""
    attrs, methods = protocol_members(KIND_PROTOCOLS[kind])
    gaps = []
    for name in attrs:
        if not _lookup(obj, name)[0]:
            gaps.append(name)
    for name in methods:
        present, value = _lookup(obj, name)
        if not present:
            gaps.append(name)
        elif not callable(value):
            gaps.append(f"{name} (not callable)")
    for name in OPTIONAL_MEMBERS[kind]:
        present, value = _lookup(obj, name)
        if present and name in _OPTIONAL_METHODS and not callable(value):
            gaps.append(f"{name} (not callable)")
    return gaps
