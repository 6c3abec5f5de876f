"""Any Hugging Face causal LM, frozen, with the speech-side trainables (prompt embeddings, state head).

The LLM's own weights never train: they are frozen at build time, stay in eval mode even when a parent calls
``.train()``, and :meth:`HFCausalLM.fingerprint` proves they are unchanged. What trains is small and owned
here: ``prompt_embeddings`` (N, H), inserted before the audio of every user turn, and ``state_head``
(H -> states), read at the end of each input chunk (listen / respond / ignore).

Two ways to run it:

* incremental, on an explicit per-session :class:`~omnikit.components.llms.state.LLMState` (streaming
  inference): ``new_conversation`` -> ``start_user_turn`` -> ``append_audio``... -> ``start_assistant`` ->
  ``step``... until ``is_end_of_turn``; ``fork`` for barge-in;
* whole sequences, batched (training): ``forward_train``.

Serving calls :meth:`HFCausalLM.prepare_inference` once: from then on the incremental API runs on a copy of the
weights in ``inference_dtype`` (on CPU through :mod:`omnikit.components.llms.fast_decode`: a pre-allocated KV
cache, float16 matrices by default), while ``self.llm``, its fingerprint and ``forward_train`` stay exactly as
built. Training never calls it.

Both build the same sequence from the chat template of the tokenizer (see
:mod:`omnikit.components.llms.chat_template`):
``[system prefix + system text][user prefix][prompt embeddings][audio][assistant prefix][answer][end of turn]``.
"""

from __future__ import annotations

import copy
import inspect
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from omnikit.components.llms.chat_template import ChatSegments, encode, split_chat_template
from omnikit.components.llms.embedded import DEFAULT_ALIAS
from omnikit.components.llms.fast_decode import FastDecoder, KVCache, unsupported_reason
from omnikit.components.llms.fingerprint import llm_fingerprint
from omnikit.components.llms.loading import _torch_dtype, load_backbone
from omnikit.components.llms.sampling import GREEDY, Sampling, sample_token
from omnikit.components.llms.state import LLMState
from omnikit.registry import param

IGNORE_INDEX = -100


@dataclass
class HFCausalLMConfig:
    model: str = param(
        DEFAULT_ALIAS,
        "The LLM: a packaged alias (smollm2-135m-instruct, offline), a .gguf path, a local folder or hub id, "
        "random:<llama|qwen2|gemma|mistral> (tiny, tests), or config:<qwen2-7b|folder> (meta device, no weights).",
    )
    dtype: str = param(
        "auto",
        "Weight dtype of the frozen LLM as built (training, forward_train, the fingerprint): float32, bfloat16, "
        "float16 or auto (as stored).",
    )
    inference_dtype: str = param(
        "auto",
        "Weight dtype of the decode path once the model serves (prepare_inference: sessions, chat, eval, serve): "
        "float32, bfloat16, float16, int8 (weight-only, per-row scales; CPU fast path only), same (= dtype) or "
        "auto (on CPU float16 — half the bytes of float32 and 8x finer than bfloat16 — or bfloat16 when a weight "
        "exceeds float16's range; same elsewhere). Training and the fingerprint always use dtype.",
    )
    device: str = param("auto", "Where the LLM runs: cpu, cuda, cuda:N, or auto (cuda when available).")
    prompt_embeddings: int = param(
        25, "Trainable prompt embeddings inserted before the audio of each user turn."
    )
    states: int = param(3, "Outputs of the state head (listen, respond, ignore).")
    system_prompt: str = param("You are a helpful assistant.", "Default system prompt of a conversation.")
    chat_template: str | None = param(
        None,
        "Chat template override: chatml, llama3, gemma, mistral, or a Jinja string (default: tokenizer's).",
    )
    prompt_init_std: float = param(
        0.0, "Init std of the prompt embeddings; 0 = the std of the frozen token embedding table."
    )


FAST_CHECK_ATOL = {torch.float32: 1e-3, torch.bfloat16: 0.1, torch.float16: 0.05, torch.int8: 0.2}
"""Largest relative difference (to the largest hidden value) allowed between the fast path and the model's own
forward at :meth:`HFCausalLM.prepare_inference`, per inference dtype (a wiring error is far larger)."""


@dataclass
class _InferencePath:
    """What the incremental API runs on after :meth:`HFCausalLM.prepare_inference` (a plain object, not a
    submodule: nothing here enters ``state_dict``, the fingerprint or a checkpoint)."""

    dtype: torch.dtype
    fast: FastDecoder | None  # the lean CPU path, or None: Hugging Face's forward on ``module``
    module: Any  # the HF causal LM (``self.llm`` itself when the dtype is unchanged)
    description: str


@dataclass
class LLMTrainOutput:
    """What :meth:`HFCausalLM.forward_train` returns."""

    lm_loss: Tensor | None  # mean next-token CE over answer + end-of-turn tokens; None without targets
    audio_hidden: Tensor  # (B, T, H) last-layer hidden states at the audio positions (zeros past audio_lens)
    state_logits: Tensor  # (B, T, num_states) = state_head(audio_hidden)
    n_target_tokens: int


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class HFCausalLM(nn.Module):
    """Frozen Hugging Face causal LM (default: SmolLM2-135M-Instruct, shipped offline) + prompt embeddings + state head.

    Swap the backbone with ``model.llm.args.model=<folder | hub id | file.gguf>``; the chat segments come
    from the tokenizer's own chat template, so no model-specific token ids are needed.
    """

    config_class = HFCausalLMConfig

    def __init__(self, config: HFCausalLMConfig, **context: Any) -> None:
        super().__init__()
        self.config = config
        model, tokenizer, is_meta = load_backbone(config.model, config.dtype)
        self.is_meta = is_meta
        device = torch.device("meta") if is_meta else _resolve_device(config.device)
        if not is_meta:
            model = model.to(device)
        model.requires_grad_(False)
        model.eval()
        self.llm = model
        self.tokenizer = tokenizer
        self.segments: ChatSegments = split_chat_template(tokenizer, config.chat_template)
        text_config = (
            model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        )
        self.hidden_size: int = int(text_config.hidden_size)
        self.num_states: int = int(config.states)
        self._softcap = getattr(text_config, "final_logit_softcapping", None)
        self._base = getattr(model, model.base_model_prefix)
        params = inspect.signature(self._base.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"

        train_device = torch.device("cpu") if is_meta else device
        std = config.prompt_init_std
        if std <= 0:
            table = model.get_input_embeddings().weight
            std = 0.02 if is_meta else float(table.detach().float().std())
        self.prompt_embeddings = nn.Parameter(
            torch.randn(config.prompt_embeddings, self.hidden_size, device=train_device) * std
        )
        self.state_head = nn.Linear(self.hidden_size, self.num_states, device=train_device)
        self._system_states: dict[str, LLMState] = {}
        self._inference: _InferencePath | None = None
        self._float16_ok: bool | None = None

    # ------------------------------------------------------------------ basics
    def train(self, mode: bool = True) -> HFCausalLM:
        """Train mode for the trainables only: the frozen LLM stays in eval mode (no dropout)."""
        super().train(mode)
        self.llm.eval()
        return self

    @property
    def device(self) -> torch.device:
        return self.llm.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.llm.get_input_embeddings().weight.dtype

    def fingerprint(self) -> str:
        """Digest of the frozen LLM weights (see :func:`llm_fingerprint`)."""
        return llm_fingerprint(self.llm)

    def tokenize(self, text: str) -> list[int]:
        """Token ids of plain text (no special tokens added)."""
        return encode(self.tokenizer, text)

    def embed(self, ids: Tensor | list[int]) -> Tensor:
        """The frozen input embeddings of token ids: (..., H)."""
        if not isinstance(ids, Tensor):
            ids = torch.tensor(ids, dtype=torch.long)
        return self.llm.get_input_embeddings()(ids.to(self.device))

    def text_embeddings(self, text: str) -> Tensor:
        """Frozen token embeddings of ``text``: (n, H) (the speech decoder's text input)."""
        return self.embed(self.tokenize(text))

    def is_end_of_turn(self, token_id: int) -> bool:
        """True for the token that ends the assistant turn (or the tokenizer's EOS)."""
        return int(token_id) in self.segments.stop_ids

    # ------------------------------------------------------------------ internals
    def _logits(self, hidden: Tensor) -> Tensor:
        logits = self.llm.get_output_embeddings()(hidden)
        if self._softcap:
            logits = torch.tanh(logits / self._softcap) * self._softcap
        return logits

    def _prompt(self) -> Tensor:
        return self.prompt_embeddings.to(self.device, self.dtype)

    def _feed(self, state: LLMState, embeds: Tensor) -> Tensor:
        """Run (1, n, H) embeddings on top of the cache; returns the (1, n, H) last-layer hidden states (in the
        built dtype, whichever path ran them)."""
        if embeds.dim() == 2:
            embeds = embeds.unsqueeze(0)
        if embeds.shape[1] == 0:
            raise ValueError("nothing to feed: empty embedding sequence")
        path = self._inference
        if path is not None and path.fast is not None:
            if not isinstance(state.cache, KVCache):
                raise ValueError("this conversation was started before prepare_inference(); start a new one")
            hidden = path.fast.forward(embeds[0], state.cache)[None].to(self.dtype)
        else:
            if isinstance(state.cache, KVCache):
                raise ValueError("this conversation belongs to the fast decode path; start a new one")
            module, dtype = (self.llm, self.dtype) if path is None else (path.module, path.dtype)
            base = getattr(module, module.base_model_prefix)
            out = base(inputs_embeds=embeds.to(self.device, dtype), use_cache=True, **{self._cache_kw: state.cache})
            hidden = out.last_hidden_state.to(self.dtype)
        state.length += embeds.shape[1]
        state.last_hidden = hidden[0, -1]
        return hidden

    def _decode_logits(self, hidden: Tensor) -> Tensor:
        """Logits of the incremental path (the inference copy of the LM head once prepared)."""
        path = self._inference
        if path is None:
            return self._logits(hidden)
        if path.fast is not None:
            return path.fast.logits(hidden)
        logits = path.module.get_output_embeddings()(hidden.to(path.dtype))
        if self._softcap:
            logits = torch.tanh(logits / self._softcap) * self._softcap
        return logits

    def _new_cache(self) -> Any:
        if self._inference is not None and self._inference.fast is not None:
            return self._inference.fast.new_cache()
        from transformers import DynamicCache

        try:
            return DynamicCache(config=self.llm.config)
        except TypeError:  # older transformers
            return DynamicCache()

    # ------------------------------------------------------------------ inference path
    def resolved_inference_dtype(self) -> torch.dtype:
        """The dtype ``inference_dtype`` names for this model and device."""
        name = self.config.inference_dtype
        if name == "same" or (name == "auto" and self.device.type != "cpu"):
            return self.dtype
        if name == "auto":  # weight-only: activations stay float32, so float16's finer mantissa is what counts
            return torch.float16 if self._fits_float16() else torch.bfloat16
        if name == "int8":
            return torch.int8
        resolved = _torch_dtype(name) if name in ("float32", "bfloat16", "float16") else None
        if not isinstance(resolved, torch.dtype):
            raise ValueError(
                f"inference_dtype must be float32, bfloat16, float16, int8, same or auto, got {name!r}"
            )
        return resolved

    def _fits_float16(self) -> bool:
        if self._float16_ok is None:
            limit = torch.finfo(torch.float16).max
            self._float16_ok = all(float(p.detach().abs().max()) <= limit for p in self.llm.parameters() if p.numel())
        return self._float16_ok

    @property
    def inference_path(self) -> str:
        """Which path the incremental API runs on, in words (``training weights`` before prepare_inference)."""
        return "training weights (Hugging Face forward)" if self._inference is None else self._inference.description

    @property
    def fast_decoder(self) -> FastDecoder | None:
        """The fast decode path once prepared on CPU (its ``weight_bytes()`` is what one step reads), else None."""
        return None if self._inference is None else self._inference.fast

    def release_inference(self) -> None:
        """Back to the training weights for the incremental API (drops the inference copy)."""
        self._inference = None
        self._system_states.clear()

    @torch.no_grad()
    def prepare_inference(self, dtype: str | None = None) -> str:
        """Run the incremental API on inference weights from now on; returns :attr:`inference_path`.

        ``dtype`` overrides the config's ``inference_dtype``. On CPU, a supported architecture gets the
        :class:`~omnikit.components.llms.fast_decode.FastDecoder`, checked against the model's own forward on the
        system prompt (a mismatch warns and keeps the Hugging Face path); elsewhere, or unsupported, Hugging
        Face's forward runs on a copy in the inference dtype (on ``self.llm`` itself when it is unchanged).
        ``self.llm``, the fingerprint and ``forward_train`` are untouched; conversations started before this
        call must be started again. Idempotent; a no-op on the meta device.
        """
        if self.is_meta:
            return self.inference_path
        if dtype is not None:
            self.config.inference_dtype = dtype
        target = self.resolved_inference_dtype()
        if self._inference is not None and self._inference.dtype == target:
            return self.inference_path
        self._system_states.clear()
        self._inference = None
        fast = None
        reason = unsupported_reason(self.llm) if self.device.type == "cpu" else f"device {self.device}"
        if reason is None:
            fast = FastDecoder(self.llm, target)
            probe = self.embed(self.segments.system_ids(self.tokenizer, self.config.system_prompt)
                               + self.segments.user_prefix_first)
            try:
                fast.check_against(self.llm, probe, FAST_CHECK_ATOL.get(target, 0.1))
            except ValueError as err:
                warnings.warn(f"{err}; keeping the Hugging Face decode path", stacklevel=2)
                fast, reason = None, str(err)
        name = str(target).removeprefix("torch.")
        if fast is None and target == torch.int8:
            warnings.warn(f"int8 inference needs the fast decode path ({reason}); using {self.dtype}", stacklevel=2)
            target = self.dtype
            name = f"{str(target).removeprefix('torch.')} (int8 unavailable)"
        if fast is not None:
            self._inference = _InferencePath(target, fast, self.llm, f"fast decode, {name} weights, pre-allocated KV cache")
        else:
            module = self.llm if target == self.dtype else copy.deepcopy(self.llm).to(target)
            self._inference = _InferencePath(target, None, module, f"Hugging Face forward, {name} weights ({reason})")
        return self.inference_path

    # ------------------------------------------------------------------ incremental API
    @torch.no_grad()
    def new_conversation(self, system_prompt: str | None = None) -> LLMState:
        """A fresh conversation with the system prompt prefilled (computed once per prompt, then forked)."""
        prompt = self.config.system_prompt if system_prompt is None else system_prompt
        cached = self._system_states.get(prompt)
        hidden = None if cached is None else cached.last_hidden
        fast = self._inference is not None and self._inference.fast is not None
        if (hidden is None or hidden.device != self.device or hidden.dtype != self.dtype
                or isinstance(cached.cache, KVCache) != fast):
            cached = LLMState(cache=self._new_cache(), system_prompt=prompt)
            self._feed(cached, self.embed(self.segments.system_ids(self.tokenizer, prompt)))
            self._system_states[prompt] = cached
        return cached.fork()

    def fork(self, state: LLMState) -> LLMState:
        """An independent copy of a conversation (e.g. to listen to a barge-in while speaking)."""
        return state.fork()

    @torch.no_grad()
    def start_user_turn(self, state: LLMState) -> None:
        """Append the user-turn opening and the prompt embeddings (before the first audio chunk)."""
        ids = self._user_prefix_ids(state)
        embeds = [self.embed(ids)] if ids else []
        if self.prompt_embeddings.shape[0]:
            embeds.append(self._prompt())
        if embeds:
            self._feed(state, torch.cat(embeds, dim=0))

    def _user_prefix_ids(self, state: LLMState) -> list[int]:
        if state.role == "user":
            raise ValueError(
                "a user turn is already open; fork the state before a turn to be able to discard it"
            )
        ids = self.segments.user_prefix_first if state.role == "system" else self.segments.user_prefix
        state.role = "user"
        state.generated = []
        return ids

    @torch.no_grad()
    def append_audio(self, state: LLMState, audio_emb: Tensor) -> Tensor:
        """Append (1, n, H) audio embeddings; returns state probabilities (num_states,) at the chunk's end."""
        if state.role != "user":
            raise ValueError("append_audio needs an open user turn: call start_user_turn first")
        if audio_emb.shape[-2] == 0:  # an empty chunk: re-read the state at the newest position
            last = state.last_hidden
        else:
            last = self._feed(state, audio_emb)[0, -1]
        assert last is not None
        logits = self.state_head(last.to(self.state_head.weight.dtype))
        return torch.softmax(logits.float(), dim=-1)

    @torch.no_grad()
    def append_text_user_turn(self, state: LLMState, text: str, with_prompt: bool = False) -> None:
        """A whole written user turn (the text path); prompt embeddings only if ``with_prompt``."""
        ids = self._user_prefix_ids(state)
        parts = [self.embed(ids)] if ids else []
        if with_prompt:
            parts.append(self._prompt())
        if text:
            parts.append(self.text_embeddings(text))
        if parts:
            self._feed(state, torch.cat(parts, dim=0))

    def _sample(
        self, state: LLMState, sampling: Sampling, generator: torch.Generator | None
    ) -> tuple[int, Tensor]:
        hidden = state.last_hidden
        assert hidden is not None
        token = sample_token(self._decode_logits(hidden), sampling, generator)
        state.generated.append(token)
        return token, hidden

    @torch.no_grad()
    def start_assistant(
        self, state: LLMState, sampling: Sampling = GREEDY, generator: torch.Generator | None = None
    ) -> tuple[int, Tensor]:
        """Close the user turn, open the assistant turn, sample its first token.

        Returns the token id and the (H,) last-layer hidden state at the position that produced it.
        """
        if state.role != "user":
            raise ValueError("start_assistant needs an open user turn")
        self._feed(state, self.embed(self.segments.assistant_prefix))
        state.role = "assistant"
        state.generated = []
        return self._sample(state, sampling, generator)

    @torch.no_grad()
    def step(
        self,
        state: LLMState,
        token_id: int,
        sampling: Sampling = GREEDY,
        generator: torch.Generator | None = None,
    ) -> tuple[int, Tensor]:
        """Feed the previous token, sample the next one; returns (token id, (H,) hidden that produced it).

        An end-of-turn token is never fed: the next user turn's prefix closes the turn.
        """
        if state.role != "assistant":
            raise ValueError("step needs an open assistant turn: call start_assistant first")
        if self.is_end_of_turn(token_id):
            raise ValueError("end-of-turn token sampled: the answer is over, do not feed it")
        self._feed(state, self.embed([int(token_id)]))
        return self._sample(state, sampling, generator)

    @torch.no_grad()
    def generate(
        self,
        state: LLMState,
        max_new_tokens: int = 64,
        sampling: Sampling = GREEDY,
        generator: torch.Generator | None = None,
    ) -> tuple[list[int], Tensor]:
        """Run a whole assistant turn: answer token ids (without end of turn) and their hidden states (n, H)."""
        token, hidden = self.start_assistant(state, sampling, generator)
        ids: list[int] = []
        hiddens: list[Tensor] = []
        while not self.is_end_of_turn(token):
            ids.append(token)
            hiddens.append(hidden)
            if len(ids) >= max_new_tokens:
                break
            token, hidden = self.step(state, token, sampling, generator)
        stacked = torch.stack(hiddens) if hiddens else torch.zeros(0, self.hidden_size, device=self.device)
        return ids, stacked

    @torch.no_grad()
    def chat(
        self,
        text: str,
        max_new_tokens: int = 64,
        sampling: Sampling = GREEDY,
        system_prompt: str | None = None,
        generator: torch.Generator | None = None,
    ) -> str:
        """Text question -> text answer, one turn (training answers, written-question baseline)."""
        state = self.new_conversation(system_prompt)
        self.append_text_user_turn(state, text)
        ids, _ = self.generate(state, max_new_tokens, sampling, generator)
        return str(self.tokenizer.decode(ids, skip_special_tokens=True)).strip()

    # ------------------------------------------------------------------ training
    def forward_train(
        self,
        audio_emb: Tensor,
        audio_lens: Tensor,
        targets: list[str] | None,
        system_prompt: str | None = None,
        use_prompt: bool = True,
    ) -> LLMTrainOutput:
        """Teacher-forced batch: LM loss on the answers and state logits at the audio positions.

        Per example: ``[system][user prefix][prompt embeddings][audio[:len]][assistant prefix][target][end]``,
        right-padded. Labels are -100 except on target and end-of-turn tokens. Without ``targets`` the
        sequence stops after the audio (causal attention makes the audio hidden states identical).
        Gradients reach ``audio_emb``, ``prompt_embeddings`` and ``state_head``; the LLM is frozen.
        """
        batch, max_t, _ = audio_emb.shape
        if targets is not None and len(targets) != batch:
            raise ValueError(f"{len(targets)} targets for a batch of {batch}")
        prompt = self.config.system_prompt if system_prompt is None else system_prompt
        seg = self.segments
        head_ids = seg.system_ids(self.tokenizer, prompt) + seg.user_prefix_first
        head = self.embed(head_ids)
        if use_prompt:
            head = torch.cat([head, self._prompt()], dim=0)
        audio_start = head.shape[0]
        tail_prefix = self.embed(seg.assistant_prefix)
        sequences: list[Tensor] = []
        labels: list[Tensor] = []
        lens = [int(n) for n in audio_lens.tolist()]
        for b in range(batch):
            parts = [head, audio_emb[b, : lens[b]].to(self.device, self.dtype)]
            label = [IGNORE_INDEX] * (audio_start + lens[b])
            if targets is not None:
                answer = self.tokenize(targets[b]) + seg.end_of_turn
                parts += [tail_prefix, self.embed(answer)]
                label += [IGNORE_INDEX] * len(seg.assistant_prefix) + answer
            sequences.append(torch.cat(parts, dim=0))
            labels.append(torch.tensor(label, dtype=torch.long))
        embeds = pad_sequence(sequences, batch_first=True)
        seq_lens = torch.tensor([s.shape[0] for s in sequences])
        mask = (torch.arange(embeds.shape[1])[None, :] < seq_lens[:, None]).long().to(self.device)
        out = self._base(inputs_embeds=embeds, attention_mask=mask, use_cache=False)
        hidden = out.last_hidden_state

        audio_hidden = hidden[:, audio_start : audio_start + max_t]
        if audio_hidden.shape[1] < max_t:  # no example reaches max_t
            pad = hidden.new_zeros(batch, max_t - audio_hidden.shape[1], hidden.shape[-1])
            audio_hidden = torch.cat([audio_hidden, pad], dim=1)
        valid = torch.arange(max_t, device=hidden.device)[None, :] < audio_lens.to(hidden.device)[:, None]
        audio_hidden = audio_hidden * valid[..., None].to(audio_hidden.dtype)
        state_logits = self.state_head(audio_hidden.to(self.state_head.weight.dtype))

        lm_loss: Tensor | None = None
        n_targets = 0
        if targets is not None:
            label_pad = pad_sequence(labels, batch_first=True, padding_value=IGNORE_INDEX).to(self.device)
            next_labels = label_pad[:, 1:]
            picked = next_labels != IGNORE_INDEX
            n_targets = int(picked.sum())
            logits = self._logits(hidden[:, :-1][picked])
            lm_loss = nn.functional.cross_entropy(logits.float(), next_labels[picked], reduction="mean")
        return LLMTrainOutput(lm_loss, audio_hidden, state_logits, n_targets)

    def forward(self, *args: Any, **kwargs: Any) -> LLMTrainOutput:
        """Same as :meth:`forward_train`."""
        return self.forward_train(*args, **kwargs)

    def extra_repr(self) -> str:
        n = sum(p.numel() for p in self.llm.parameters())
        return (
            f"model={self.config.model!r}, llm_params={n / 1e6:.1f}M, hidden={self.hidden_size}, "
            f"prompt={self.config.prompt_embeddings}, states={self.num_states}, meta={self.is_meta}"
        )
