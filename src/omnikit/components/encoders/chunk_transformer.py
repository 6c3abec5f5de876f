"""Streaming chunked Transformer speech encoder (Freeze-Omni's input encoder, with consistent positions)."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from omnikit.audio.cmvn import GlobalCMVN
from omnikit.components.encoders.attention import RelPositionSelfAttention
from omnikit.components.encoders.subsampling import RATE, Conv2dSubsampling4, subsampled_lengths
from omnikit.interfaces import FEATURE_DIM, EncoderOutput
from omnikit.registry import param


@dataclass
class ChunkTransformerConfig:
    layers: int = param(6, "Transformer blocks (paper: 24).")
    dim: int = param(256, "Model width (paper: 1024).")
    heads: int = param(4, "Attention heads (paper: 16).")
    ffn_dim: int = param(1024, "Feed-forward hidden units, ReLU (paper: 4096).")
    subsampling_channels: int = param(0, "Channels of the conv2d 4x subsampling; 0 = dim.")
    chunk_size: int = param(4, "Encoder frames (40 ms each) per attention chunk; <= 0 = full context (no streaming).")
    left_chunks: int = param(16, "History chunks each chunk attends to; -1 = unlimited (cache then grows).")
    dynamic_chunks: bool = param(False, "Training only: random chunk size per batch (WeNet dynamic chunk).")
    max_dynamic_chunk: int = param(25, "Largest random chunk size; half of dynamic batches use full context.")
    dropout: float = param(0.1, "Dropout after attention / FFN and on the input layer.")
    attention_dropout: float = param(0.0, "Dropout on attention probabilities.")
    pos_dropout: float = param(0.1, "Dropout on the scaled input embedding.")
    ctc_vocab: int = param(0, "CTC head output size (including blank); 0 = no CTC head.")
    cmvn: str = param("", "Global CMVN stats JSON applied to input features; empty = identity (set later).")


@dataclass
class ChunkTransformerState:
    """Per-session streaming state: the conv left context and per-layer K/V caches (bounded)."""

    tail: Tensor | None = None  # (B, 3, F) last input frames (post-CMVN), zeros before the first chunk
    kv: list[tuple[Tensor, Tensor]] | None = None  # per layer (B, H, <= chunk_size*left_chunks, d_k)
    frames: int = 0  # encoder frames produced so far (informational)


class TransformerBlock(nn.Module):
    """Pre-norm block: x + MHA(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float, attention_dropout: float):
        super().__init__()
        self.norm_attn = nn.LayerNorm(dim)
        self.attn = RelPositionSelfAttention(dim, heads, attention_dropout)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, k_prev: Tensor | None, v_prev: Tensor | None, q_pos: Tensor, k_pos: Tensor,
                mask: Tensor | None, dist_range: tuple[int, int] | None) -> tuple[Tensor, Tensor, Tensor]:
        h = self.norm_attn(x)
        k, v = self.attn.project_kv(h)
        if k_prev is not None:
            k, v = torch.cat([k_prev, k], dim=2), torch.cat([v_prev, v], dim=2)
        x = x + self.dropout(self.attn(h, k, v, q_pos, k_pos, mask, dist_range))
        x = x + self.dropout(self.ffn(self.norm_ffn(x)))
        return x, k, v


def chunk_mask(num: int, chunk: int, left_chunks: int, device: torch.device | None = None) -> Tensor:
    """``(num, num)`` bool: frame i sees frames of its own chunk and ``left_chunks`` chunks before it."""
    idx = torch.arange(num, device=device) // chunk
    allowed = idx[None, :] <= idx[:, None]
    if left_chunks >= 0:
        allowed &= idx[None, :] >= idx[:, None] - left_chunks
    return allowed


class ChunkTransformerEncoder(nn.Module):
    """Chunked Transformer encoder: conv2d 4x subsampling, pre-norm blocks, relative positions, streams.

    Features ``(B, T, 80)`` at 100 Hz -> hidden ``(B, ~T/4, dim)`` at 25 Hz, optionally with CTC logits.
    Training uses a chunk attention mask (``chunk_size`` frames, ``left_chunks`` history); ``forward_chunk``
    runs the same computation chunk by chunk with per-layer K/V caches bounded by ``chunk_size*left_chunks``
    frames. Positions are relative (the distance query-key), so streaming equals the masked full forward at
    any stream length. Unlike the released Freeze-Omni encoder there is no absolute ``pe_index`` that drifts
    or wraps; parameter shapes are the same (24 x 1024 builds 357,950,464 parameters).
    The conv subsampling's 3-frame left context is zeros at the utterance start in both paths.
    """

    config_class = ChunkTransformerConfig

    def __init__(self, config: ChunkTransformerConfig, input_dim: int = FEATURE_DIM, **_: object):
        super().__init__()
        self.config = config
        c = config
        self.input_dim = input_dim
        self.output_dim = c.dim
        self.ctc_vocab_size = c.ctc_vocab
        self.cmvn = GlobalCMVN(input_dim)
        if c.cmvn:
            self.cmvn.load_(GlobalCMVN.load_json(c.cmvn))
        self.subsampling = Conv2dSubsampling4(input_dim, c.subsampling_channels or c.dim, c.dim)
        self.input_layer = nn.Sequential(nn.Linear(c.dim, c.dim), nn.LayerNorm(c.dim), nn.Dropout(c.dropout), nn.ReLU())
        self.xscale = math.sqrt(c.dim)
        self.pos_dropout = nn.Dropout(c.pos_dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(c.dim, c.heads, c.ffn_dim, c.dropout, c.attention_dropout) for _ in range(c.layers)
        )
        self.final_norm = nn.LayerNorm(c.dim)
        self.ctc_head = nn.Linear(c.dim, c.ctc_vocab) if c.ctc_vocab > 0 else None

    # ---- shared pieces
    def _embed(self, x: Tensor) -> Tensor:
        return self.pos_dropout(self.input_layer(x) * self.xscale)

    def _head(self, h: Tensor) -> tuple[Tensor, Tensor | None]:
        h = self.final_norm(h)
        return h, (self.ctc_head(h) if self.ctc_head is not None else None)

    def _training_chunking(self) -> tuple[int, int]:
        """(chunk, left_chunks) for this forward; chunk <= 0 means full context."""
        c = self.config
        if self.training and c.dynamic_chunks:
            if random.random() < 0.5:
                return 0, -1
            return random.randint(1, max(1, c.max_dynamic_chunk)), c.left_chunks
        return c.chunk_size, c.left_chunks

    # ---- full sequence (training / offline)
    def forward(self, feats: Tensor, lens: Tensor) -> EncoderOutput:
        """``feats`` ``(B, T, input_dim)``, ``lens`` ``(B,)`` -> :class:`EncoderOutput` with the chunk mask."""
        x = self._embed(self.subsampling.forward_offline(self.cmvn(feats)))
        b, t, _ = x.shape
        out_lens = subsampled_lengths(lens.to(x.device)).clamp_max(t)
        chunk, left = self._training_chunking()
        valid = torch.arange(t, device=x.device)[None, :] < out_lens[:, None]  # (B, T)
        if chunk > 0:
            mask = chunk_mask(t, chunk, left, x.device)[None] & valid[:, None, :]
            dist_range = (-(chunk - 1), t - 1 if left < 0 else min(t - 1, chunk * (left + 1) - 1))
        else:
            mask = valid[:, None, :].expand(b, t, t)
            dist_range = None
        pos = torch.arange(t, device=x.device)
        for block in self.blocks:
            x, _, _ = block(x, None, None, pos, pos, mask, dist_range)
        hidden, logits = self._head(x)
        return EncoderOutput(hidden=hidden, lens=out_lens, ctc_logits=logits)

    # ---- streaming
    def fit_cmvn(self, feats: Iterable[Tensor]) -> None:
        """Set the global CMVN from raw fbank features ``(T, input_dim)`` (do this before training stage 1;
        the stats are buffers, saved with the encoder's weights)."""
        self.cmvn.load_(GlobalCMVN.compute(feats))

    def init_state(self) -> ChunkTransformerState:
        return ChunkTransformerState()

    @property
    def chunk_frames(self) -> int:
        """Input fbank frames per attention chunk (16 = 160 ms for chunk_size 4)."""
        return RATE * self.config.chunk_size

    def forward_chunk(self, feats: Tensor, state: ChunkTransformerState) -> tuple[Tensor, ChunkTransformerState]:
        """``(B, t, input_dim)`` new frames, ``t`` a multiple of :attr:`chunk_frames` -> ``(B, t/4, dim)``.

        The input state is not modified; the returned state holds the new tail and trimmed caches."""
        c = self.config
        if c.chunk_size <= 0:
            raise ValueError("chunk_transformer with chunk_size <= 0 is full-context and cannot stream")
        if feats.shape[1] % self.chunk_frames:
            raise ValueError(
                f"forward_chunk needs a multiple of {self.chunk_frames} feature frames, got {feats.shape[1]}"
            )
        feats = self.cmvn(feats)
        tail = state.tail
        if tail is None:
            tail = feats.new_zeros(feats.shape[0], 3, feats.shape[2])
        kv = state.kv
        frames = state.frames
        outs = []
        keep = c.chunk_size * c.left_chunks if c.left_chunks >= 0 else None
        for start in range(0, feats.shape[1], self.chunk_frames):
            sub, tail = self.subsampling.forward_chunk(feats[:, start : start + self.chunk_frames], tail)
            x = self._embed(sub)
            cached = 0 if kv is None else kv[0][0].shape[2]
            n = x.shape[1]
            q_pos = torch.arange(cached, cached + n, device=x.device)
            k_pos = torch.arange(cached + n, device=x.device)
            new_kv = []
            for i, block in enumerate(self.blocks):
                kp, vp = (None, None) if kv is None else kv[i]
                x, k, v = block(x, kp, vp, q_pos, k_pos, None, None)
                if keep is not None:
                    k, v = k[:, :, k.shape[2] - min(keep, k.shape[2]) :], v[:, :, v.shape[2] - min(keep, v.shape[2]) :]
                new_kv.append((k.detach(), v.detach()))
            kv = new_kv
            frames += n
            outs.append(self._head(x)[0])
        return torch.cat(outs, dim=1), ChunkTransformerState(tail=tail, kv=kv, frames=frames)
