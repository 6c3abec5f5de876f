"""Streaming Conformer encoder built on SpeechBrain's ``ConformerEncoder`` (Dynamic Chunk Convolution)."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from speechbrain.lobes.models.transformer.Conformer import (
    ConformerEncoder,
    ConformerEncoderLayerStreamingContext,
)
from speechbrain.lobes.models.transformer.Transformer import RelPosEncXL
from speechbrain.lobes.models.transformer.TransformerASR import make_transformer_src_mask
from speechbrain.utils.dynamic_chunk_training import DynChunkTrainConfig
from torch import Tensor, nn

from omnikit.audio.cmvn import GlobalCMVN
from omnikit.components.encoders.subsampling import RATE, Conv2dSubsampling4, subsampled_lengths
from omnikit.interfaces import FEATURE_DIM, EncoderOutput
from omnikit.registry import param

UNLIMITED = 10**9  # "frames of left context" that stands for unlimited


@dataclass
class SBConformerConfig:
    layers: int = param(6, "Conformer blocks.")
    dim: int = param(256, "Model width (d_model).")
    heads: int = param(4, "Attention heads.")
    ffn_dim: int = param(1024, "Feed-forward hidden units (Swish).")
    kernel_size: int = param(15, "Depthwise convolution kernel (odd); chunked (DCConv) so it streams.")
    subsampling_channels: int = param(0, "Channels of the conv2d 4x subsampling; 0 = dim.")
    chunk_size: int = param(4, "Encoder frames per attention chunk; <= 0 = full context (no streaming).")
    left_chunks: int = param(16, "History chunks each chunk attends to; -1 = unlimited (cache then grows).")
    dynamic_chunks: bool = param(False, "Training only: random chunk size per batch.")
    max_dynamic_chunk: int = param(25, "Largest random chunk size; half of dynamic batches use full context.")
    dropout: float = param(0.1, "Dropout inside the Conformer and after the front-end.")
    ctc_vocab: int = param(0, "CTC head output size (including blank); 0 = no CTC head.")
    cmvn: str = param("", "Global CMVN stats JSON applied to input features; empty = identity (set later).")


@dataclass
class SBConformerState:
    """Per-session state: conv left context and SpeechBrain's per-layer streaming contexts (bounded)."""

    tail: Tensor | None = None
    layers: list[ConformerEncoderLayerStreamingContext] | None = None
    frames: int = 0


class SpeechBrainConformerEncoder(nn.Module):
    """SpeechBrain Conformer (RelPosMHAXL, chunked conv) behind omnikit's conv2d 4x front; streams.

    ``forward`` uses SpeechBrain's chunk attention mask and Dynamic Chunk Convolution; ``forward_chunk`` uses
    SpeechBrain's ``forward_streaming`` (each layer keeps ``chunk_size*left_chunks`` input frames for
    attention and ``(kernel_size-1)/2`` frames for the convolution), and equals the masked forward. It
    recomputes attention outputs for the cached frames (SpeechBrain's method), so each chunk costs more
    than with ``chunk_transformer``'s K/V cache.
    """

    config_class = SBConformerConfig

    def __init__(self, config: SBConformerConfig, input_dim: int = FEATURE_DIM, **_: object):
        super().__init__()
        c = config
        if c.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {c.kernel_size}")
        self.config = c
        self.input_dim = input_dim
        self.output_dim = c.dim
        self.ctc_vocab_size = c.ctc_vocab
        self.cmvn = GlobalCMVN(input_dim)
        if c.cmvn:
            self.cmvn.load_(GlobalCMVN.load_json(c.cmvn))
        self.subsampling = Conv2dSubsampling4(input_dim, c.subsampling_channels or c.dim, c.dim)
        self.front_dropout = nn.Dropout(c.dropout)
        self.pos = RelPosEncXL(c.dim)
        self.conformer = ConformerEncoder(
            num_layers=c.layers, d_model=c.dim, d_ffn=c.ffn_dim, nhead=c.heads, kernel_size=c.kernel_size,
            dropout=c.dropout, causal=False, attention_type="RelPosMHAXL",
        )
        self.ctc_head = nn.Linear(c.dim, c.ctc_vocab) if c.ctc_vocab > 0 else None

    def _chunking(self) -> DynChunkTrainConfig | None:
        c = self.config
        chunk, left = c.chunk_size, c.left_chunks
        if self.training and c.dynamic_chunks:
            if random.random() < 0.5:
                return None
            chunk = random.randint(1, max(1, c.max_dynamic_chunk))
        if chunk <= 0:
            return None
        return DynChunkTrainConfig(chunk_size=chunk, left_context_size=None if left < 0 else left)

    def _head(self, h: Tensor) -> Tensor | None:
        return self.ctc_head(h) if self.ctc_head is not None else None

    def forward(self, feats: Tensor, lens: Tensor) -> EncoderOutput:
        x = self.front_dropout(self.subsampling.forward_offline(self.cmvn(feats)))
        t = x.shape[1]
        out_lens = subsampled_lengths(lens.to(x.device)).clamp_max(t)
        pad = torch.arange(t, device=x.device)[None, :] >= out_lens[:, None]
        dcc = self._chunking()
        mask = make_transformer_src_mask(x, causal=False, dynchunktrain_config=dcc)
        h, _ = self.conformer(x, src_mask=mask, src_key_padding_mask=pad, pos_embs=self.pos(x),
                              dynchunktrain_config=dcc)
        return EncoderOutput(hidden=h, lens=out_lens, ctc_logits=self._head(h))

    def fit_cmvn(self, feats: Iterable[Tensor]) -> None:
        """Set the global CMVN from raw fbank features ``(T, input_dim)`` (do this before training stage 1;
        the stats are buffers, saved with the encoder's weights)."""
        self.cmvn.load_(GlobalCMVN.compute(feats))

    def init_state(self) -> SBConformerState:
        return SBConformerState()

    @property
    def chunk_frames(self) -> int:
        return RATE * self.config.chunk_size

    def forward_chunk(self, feats: Tensor, state: SBConformerState) -> tuple[Tensor, SBConformerState]:
        """``(B, t, input_dim)``, ``t`` a multiple of :attr:`chunk_frames` -> ``(B, t/4, dim)``, new state."""
        c = self.config
        if c.chunk_size <= 0:
            raise ValueError("sb_conformer with chunk_size <= 0 is full-context and cannot stream")
        if feats.shape[1] % self.chunk_frames:
            raise ValueError(
                f"forward_chunk needs a multiple of {self.chunk_frames} feature frames, got {feats.shape[1]}"
            )
        feats = self.cmvn(feats)
        tail = state.tail if state.tail is not None else feats.new_zeros(feats.shape[0], 3, feats.shape[2])
        left = c.chunk_size * c.left_chunks if c.left_chunks >= 0 else UNLIMITED
        if state.layers is None:
            layers = [ConformerEncoderLayerStreamingContext(mha_left_context_size=left) for _ in range(c.layers)]
        else:  # SpeechBrain's contexts are mutable: work on copies so the caller's state stays valid
            layers = [dataclasses.replace(ctx) for ctx in state.layers]
        outs = []
        for start in range(0, feats.shape[1], self.chunk_frames):
            x, tail = self.subsampling.forward_chunk(feats[:, start : start + self.chunk_frames], tail)
            known = layers[0].mha_left_context
            total = x.shape[1] + (0 if known is None else known.shape[1])
            pos = self.pos.make_pe(seq_len=total)
            context = _EncoderContext(layers)
            h, _ = self.conformer.forward_streaming(x, context=context, pos_embs=pos)
            outs.append(h)
        y = torch.cat(outs, dim=1)
        return y, SBConformerState(tail=tail, layers=layers, frames=state.frames + y.shape[1])


@dataclass
class _EncoderContext:
    """The part of SpeechBrain's ``ConformerEncoderStreamingContext`` that ``forward_streaming`` reads."""

    layers: list[ConformerEncoderLayerStreamingContext]
