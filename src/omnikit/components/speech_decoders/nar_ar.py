"""Freeze-Omni's speech decoder: NAR prefix decoder + pre-network + shared NAR/AR codec-token decoder."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnikit.components.speech_decoders.layers import (
    KV,
    DecoderLayer,
    KVCache,
    RMSNorm,
    RotaryEmbedding,
    no_empty_rows,
    padding_mask,
)
from omnikit.registry import param

INPUT_MAPPINGS = ("projection", "reshape")


@dataclass
class NARARConfig:
    dim: int = param(896, "Decoder width (all three stacks).")
    heads: int = param(14, "Attention heads; dim must be divisible by it.")
    ffn_dim: int = param(4864, "SwiGLU hidden size.")
    layers: int = param(4, "Shared NAR/AR decoder layers.")
    prefix_layers: int = param(
        4, "NAR prefix-decoder layers over the LLM hidden states; must equal `layers`, or 0 for no prefix."
    )
    prenet_layers: int = param(2, "Bidirectional pre-network layers over the LLM text embeddings.")
    input_mapping: str = param(
        "projection",
        "How cond_dim LLM vectors enter the decoder: 'projection' (Linear cond_dim->dim, one position per "
        "vector) or 'reshape' (the paper's: each vector split into cond_dim/dim positions; no parameters).",
    )
    dropout: float = param(0.1, "Residual dropout.")
    attention_dropout: float = param(0.1, "Dropout on attention probabilities.")
    rope_theta: float = param(10000.0, "RoPE base.")
    norm_eps: float = param(1e-6, "RMSNorm epsilon.")


@dataclass
class DecoderState:
    """Incremental-generation state of one segment (owned by the caller, one per user)."""

    caches: list[KVCache]
    position: int  # RoPE position of the next token
    history: list[int] = field(default_factory=list)  # codec tokens generated so far


class InputMapping(nn.Module):
    """Maps (B, N, cond_dim) LLM vectors to (B, N*factor, dim) decoder positions."""

    def __init__(self, cond_dim: int, dim: int, mode: str) -> None:
        super().__init__()
        if mode not in INPUT_MAPPINGS:
            raise ValueError(f"input_mapping must be one of {INPUT_MAPPINGS}, got {mode!r}")
        self.mode = mode
        if mode == "reshape":
            if cond_dim % dim:
                raise ValueError(
                    f"input_mapping='reshape' needs cond_dim to be a multiple of dim, got "
                    f"cond_dim={cond_dim}, dim={dim}; use input_mapping='projection' or choose "
                    "dim = cond_dim / k"
                )
            self.factor = cond_dim // dim
            self.proj: nn.Module = nn.Identity()
        else:
            self.factor = 1
            self.proj = nn.Linear(cond_dim, dim)

    def forward(self, x: Tensor, lens: Tensor) -> tuple[Tensor, Tensor]:
        if self.mode == "reshape":
            b, n, c = x.shape
            return x.reshape(b, n * self.factor, c // self.factor), lens * self.factor
        return self.proj(x), lens


class PreNet(nn.Module):
    """Bidirectional transformer over the (mapped) LLM text-token embeddings of a segment."""

    def __init__(self, cfg: NARARConfig, cond_dim: int) -> None:
        super().__init__()
        self.mapping = InputMapping(cond_dim, cfg.dim, cfg.input_mapping)
        self.layers = nn.ModuleList(_layer(cfg) for _ in range(cfg.prenet_layers))
        self.rotary = RotaryEmbedding(cfg.dim // cfg.heads, cfg.rope_theta)

    def forward(self, text_emb: Tensor, text_lens: Tensor) -> tuple[Tensor, Tensor]:
        x, lens = self.mapping(text_emb, text_lens)
        b, n, _ = x.shape
        cos, sin = self.rotary(torch.arange(n, device=x.device).expand(b, n), x.dtype)
        valid = padding_mask(lens, n)
        mask = no_empty_rows(valid[:, None, None, :].expand(b, 1, n, n))
        for layer in self.layers:
            x, _ = layer(x, cos, sin, mask)
        return x, lens


class PrefixDecoder(nn.Module):
    """NAR prefix decoder over the LLM last-layer hidden states: layer l's post-RoPE K/V become the prefix
    attended to by layer l of the shared decoder. Bidirectional over the prefix, positions 0..P-1.

    The last layer's query and output projections, MLP and post-attention norm are never read (only its
    K/V are), so they are skipped and get no gradient; they exist for the paper's layout and parameter count.
    (Under DDP use ``find_unused_parameters=True`` or freeze them.)"""

    def __init__(self, cfg: NARARConfig, cond_dim: int) -> None:
        super().__init__()
        self.mapping = InputMapping(cond_dim, cfg.dim, cfg.input_mapping)
        self.layers = nn.ModuleList(_layer(cfg) for _ in range(cfg.prefix_layers))
        self.rotary = RotaryEmbedding(cfg.dim // cfg.heads, cfg.rope_theta)

    def forward(self, hidden: Tensor, hidden_lens: Tensor) -> tuple[list[KV], Tensor]:
        x, lens = self.mapping(hidden, hidden_lens)
        b, n, _ = x.shape
        cos, sin = self.rotary(torch.arange(n, device=x.device).expand(b, n), x.dtype)
        valid = padding_mask(lens, n)
        mask = no_empty_rows(valid[:, None, None, :].expand(b, 1, n, n))
        kvs = []
        for i, layer in enumerate(self.layers):
            if i == len(self.layers) - 1:  # nothing reads the last layer's output, only its K/V
                kvs.append(layer.kv(x, cos, sin))
            else:
                x, kv = layer(x, cos, sin, mask)
                kvs.append(kv)
        return kvs, lens


def _layer(cfg: NARARConfig) -> DecoderLayer:
    return DecoderLayer(cfg.dim, cfg.heads, cfg.ffn_dim, cfg.dropout, cfg.attention_dropout, cfg.norm_eps)


class NARARSpeechDecoder(nn.Module):
    """Freeze-Omni speech decoder: NAR prefix (LLM hidden states) + pre-net (text) + shared NAR/AR codec LM.

    Sequence layout ``[prefix K/V] | H = [BOS, prenet(text)] | X = [SOS, y1..yT]``; the AR part predicts
    ``[y1..yT, EOS]``. H is bidirectional, X is causal and sees all of H and the prefix. The prefix decoder
    (``prefix.``) is fed the LLM's last-layer hidden states, and each of its layers writes the K/V prefix of
    the matching shared layer. Token ids: ``0..codebook_size-1`` codec codes, then BOS, SOS, EOS, PAD.

    Parameter name prefixes (for stage regexes): ``prenet.`` (pre-network incl. its text input projection),
    ``prefix.`` (prefix decoder incl. its hidden-state projection), ``embed.``, ``layers.``, ``norm.``,
    ``head.`` (the shared decoder; see ``PARTS``). Paper recipe: stage 2 trains everything but ``prefix.``
    (built with ``hidden=None``), stage 3 trains ``prefix.`` only.
    """

    config_class = NARARConfig
    PARTS = {
        "prenet": ("prenet.",),
        "prefix": ("prefix.",),
        "decoder": ("embed.", "layers.", "norm.", "head."),
    }

    def __init__(self, config: NARARConfig, *, cond_dim: int, codebook_size: int, **_: Any) -> None:
        super().__init__()
        if config.prefix_layers not in (0, config.layers):
            raise ValueError(
                f"prefix_layers must equal layers ({config.layers}) or be 0, got {config.prefix_layers}: "
                "layer l of the prefix decoder feeds layer l of the shared decoder"
            )
        self.config, self.cond_dim, self.codebook_size = config, cond_dim, codebook_size
        self.bos_id, self.sos_id = codebook_size, codebook_size + 1
        self.eos_id, self.pad_id = codebook_size + 2, codebook_size + 3
        self.vocab_size = codebook_size + 4
        self.embed = nn.Embedding(self.vocab_size, config.dim, padding_idx=self.pad_id)
        self.prenet = PreNet(config, cond_dim)
        self.prefix = PrefixDecoder(config, cond_dim) if config.prefix_layers else None
        self.layers = nn.ModuleList(_layer(config) for _ in range(config.layers))
        self.rotary = RotaryEmbedding(config.dim // config.heads, config.rope_theta)
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.head = nn.Linear(config.dim, self.vocab_size)

    # ------------------------------------------------------------------ parameters
    def trainable_parameters(self, part: str) -> Iterator[nn.Parameter]:
        """Parameters of one part: ``prenet``, ``prefix`` or ``decoder`` (embed, layers, norm, head)."""
        prefixes = self.PARTS[part]
        return (p for name, p in self.named_parameters() if name.startswith(prefixes))

    # ------------------------------------------------------------------ shared pieces
    def _nar_input(self, text_emb: Tensor, text_lens: Tensor) -> tuple[Tensor, Tensor]:
        """H = [BOS, prenet(text)] and its lengths."""
        pre, lens = self.prenet(text_emb, text_lens)
        bos = self.embed.weight[self.bos_id].expand(pre.shape[0], 1, -1)
        return torch.cat([bos, pre], dim=1), lens + 1

    def _prefix(
        self, hidden: Tensor | None, hidden_lens: Tensor | None
    ) -> tuple[list[KV] | None, Tensor | None]:
        if hidden is None or self.prefix is None:
            return None, None
        if hidden_lens is None:
            hidden_lens = torch.full((hidden.shape[0],), hidden.shape[1], device=hidden.device)
        return self.prefix(hidden, hidden_lens)

    # ------------------------------------------------------------------ training
    def teacher_forced_logits(
        self,
        text_emb: Tensor,
        text_lens: Tensor,
        hidden: Tensor | None,
        hidden_lens: Tensor | None,
        tokens: Tensor,
        token_lens: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """Logits over the AR part (B, T+1, V) and their targets (B, T+1) (PAD where ignored)."""
        h, h_lens = self._nar_input(text_emb, text_lens)
        prefix_kv, p_lens = self._prefix(hidden, hidden_lens)
        b, t = tokens.shape
        dev = tokens.device
        tok_valid = padding_mask(token_lens, t)
        tokens = tokens.masked_fill(~tok_valid, self.pad_id)
        sos = torch.full((b, 1), self.sos_id, dtype=torch.long, device=dev)
        x_in = torch.cat([sos, tokens], dim=1)
        targets = torch.cat([tokens, torch.full_like(sos, self.pad_id)], dim=1)
        targets[torch.arange(b, device=dev), token_lens] = self.eos_id
        x_lens = token_lens + 1

        n_h, n_x = h.shape[1], t + 1
        seq = torch.cat([h, self.embed(x_in)], dim=1)
        h_pos = torch.arange(n_h, device=dev).expand(b, n_h)
        x_pos = h_lens[:, None] + torch.arange(n_x, device=dev)  # X continues right after the valid H
        positions = torch.cat([h_pos, x_pos], dim=1)
        cos, sin = self.rotary(positions, seq.dtype)
        mask = self._train_mask(h_lens, n_h, x_lens, n_x, p_lens, prefix_kv)
        for i, layer in enumerate(self.layers):
            seq, _ = layer(seq, cos, sin, mask, past=prefix_kv[i] if prefix_kv is not None else None)
        logits = self.head(self.norm(seq[:, n_h:]))
        return logits, targets

    @staticmethod
    def _train_mask(
        h_lens: Tensor, n_h: int, x_lens: Tensor, n_x: int, p_lens: Tensor | None, prefix_kv: list[KV] | None
    ) -> Tensor:
        """Bool (B, 1, n_h+n_x, P+n_h+n_x): H rows see prefix + valid H; X rows also see causal X."""
        b, dev = h_lens.shape[0], h_lens.device
        h_valid = padding_mask(h_lens, n_h)  # (B, n_h)
        rows = n_h + n_x
        h_cols = h_valid[:, None, :].expand(b, rows, n_h)
        causal = torch.ones(n_x, n_x, dtype=torch.bool, device=dev).tril()
        x_cols = torch.zeros(b, rows, n_x, dtype=torch.bool, device=dev)
        x_cols[:, n_h:] = causal & padding_mask(x_lens, n_x)[:, None, :]
        parts = [h_cols, x_cols]
        if prefix_kv is not None and p_lens is not None:
            n_p = prefix_kv[0][0].shape[2]
            parts.insert(0, padding_mask(p_lens, n_p)[:, None, :].expand(b, rows, n_p))
        return no_empty_rows(torch.cat(parts, dim=-1)[:, None])

    def forward(
        self,
        text_emb: Tensor,
        text_lens: Tensor,
        hidden: Tensor | None,
        hidden_lens: Tensor | None,
        tokens: Tensor,
        token_lens: Tensor,
    ) -> dict[str, Tensor]:
        """Teacher-forced CE (mean over valid targets incl. EOS; PAD ignored) and top-1 accuracy."""
        logits, targets = self.teacher_forced_logits(
            text_emb, text_lens, hidden, hidden_lens, tokens, token_lens
        )
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=self.pad_id)
        valid = targets != self.pad_id
        acc = ((logits.argmax(-1) == targets) & valid).sum() / valid.sum().clamp(min=1)
        return {"loss": loss, "acc": acc}

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def prefill(self, text_emb: Tensor, hidden: Tensor | None = None, capacity: int = 1024) -> DecoderState:
        """Run the prefix decoder and H once into a fresh per-layer cache. ``text_emb``: (1, N, cond_dim),
        ``hidden``: (1, M, cond_dim) or None. ``capacity``: expected cache length (grows if exceeded)."""
        if text_emb.shape[0] != 1:
            raise ValueError("generation is batch 1: one segment of one user")
        dev = text_emb.device
        h, _ = self._nar_input(text_emb, torch.tensor([text_emb.shape[1]], device=dev))
        prefix_kv, _ = self._prefix(hidden, None)
        n_p = prefix_kv[0][0].shape[2] if prefix_kv is not None else 0
        caches = [KVCache(n_p + h.shape[1] + capacity) for _ in self.layers]
        if prefix_kv is not None:
            for cache, (k, v) in zip(caches, prefix_kv, strict=True):
                cache.append(k, v)
        n_h = h.shape[1]
        cos, sin = self.rotary(torch.arange(n_h, device=dev)[None], h.dtype)
        x = h
        for i, (layer, cache) in enumerate(zip(self.layers, caches, strict=True)):
            if i == len(self.layers) - 1:  # H needs no logits: the last layer only contributes K/V
                cache.append(*layer.kv(x, cos, sin))
            else:
                x, _ = layer(x, cos, sin, None, cache=cache)  # single item, all valid: fully bidirectional
        return DecoderState(caches=caches, position=n_h)

    @torch.no_grad()
    def step(self, token: int, state: DecoderState) -> Tensor:
        """Feed one token (SOS first) and return next-token logits (V,)."""
        dev = self.embed.weight.device
        x = self.embed(torch.tensor([[token]], device=dev))
        cos, sin = self.rotary(torch.tensor([[state.position]], device=dev), x.dtype)
        for layer, cache in zip(self.layers, state.caches, strict=True):
            x, _ = layer(x, cos, sin, None, cache=cache)
        state.position += 1
        return self.head(self.norm(x))[0, -1]

    def sample(
        self,
        logits: Tensor,
        history: list[int],
        top_k: int = 2,
        repetition_penalty: float = 1.0,
        penalty_window: int = -1,
        generator: torch.Generator | None = None,
    ) -> int:
        """Top-k sampling over codec ids + EOS (BOS/SOS/PAD are never sampled). With ``penalty_window > 0``
        the logits of tokens in the last window are penalised (positive divided, negative multiplied)."""
        logits = logits.float().clone()
        logits[[self.bos_id, self.sos_id, self.pad_id]] = float("-inf")
        if penalty_window > 0 and repetition_penalty != 1.0 and history:
            recent = torch.tensor(sorted(set(history[-penalty_window:])), device=logits.device)
            vals = logits[recent]
            logits[recent] = torch.where(vals > 0, vals / repetition_penalty, vals * repetition_penalty)
        k = max(1, min(top_k, logits.numel()))
        top_vals, top_idx = logits.topk(k)
        probs = torch.softmax(top_vals, dim=-1)
        choice = torch.multinomial(probs.cpu(), 1, generator=generator).item()
        return int(top_idx[choice])

    @torch.no_grad()
    def generate(
        self,
        text_emb: Tensor,
        hidden: Tensor | None = None,
        top_k: int = 2,
        repetition_penalty: float = 1.0,
        penalty_window: int = -1,
        max_tokens: int = 1000,
        first_chunk: int = 20,
        chunk: int = 40,
        generator: torch.Generator | None = None,
        timings: dict[str, float] | None = None,
        **_: Any,
    ) -> Iterator[Tensor]:
        """Yield codec-token chunks (1-D long): ``first_chunk`` tokens, then ``chunk`` each, then the rest at
        EOS or ``max_tokens``. ``generator`` is a CPU ``torch.Generator`` for reproducible sampling.

        ``timings`` (if given) is filled with ``prefill_s`` (prefix + H), ``first_chunk_s`` (prefill end ->
        first chunk ready, the paper's "prefill -> first speech-token chunk"), ``total_s`` and ``tokens``.
        """
        t0 = time.perf_counter()
        state = self.prefill(text_emb, hidden, capacity=max_tokens + 1)
        t_prefill = time.perf_counter()
        if timings is not None:
            timings["prefill_s"] = t_prefill - t0
        buffer: list[int] = []
        size, first, token = first_chunk, True, self.sos_id
        for _ in range(max_tokens):
            logits = self.step(token, state)
            token = self.sample(logits, state.history, top_k, repetition_penalty, penalty_window, generator)
            if token == self.eos_id:
                break
            state.history.append(token)
            buffer.append(token)
            if len(buffer) == size:
                if first and timings is not None:
                    timings["first_chunk_s"] = time.perf_counter() - t_prefill
                yield torch.tensor(buffer, dtype=torch.long)
                buffer, size, first = [], chunk, False
        if buffer:
            if first and timings is not None:
                timings["first_chunk_s"] = time.perf_counter() - t_prefill
            yield torch.tensor(buffer, dtype=torch.long)
        if timings is not None:
            timings["total_s"] = time.perf_counter() - t0
            timings["tokens"] = float(len(state.history))
