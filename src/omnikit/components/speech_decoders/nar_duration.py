"""A duration-aligned non-autoregressive speech decoder (FastSpeech-style) over the frozen LLM's text embeddings.

Inputs (``frontend``): the segment's frozen LLM token embeddings, or the segment text's characters or hibari
phonemes (:mod:`omnikit.components.speech_decoders.frontends`). Outputs (``target``): codec-token logits, or the
codec's continuous token features, snapped to its codebook at inference. Layers (``arch``): transformer or
residual dilated convolutions. The defaults are the first version's (tokens, CE, transformer).

Text encoder over the segment's frozen token embeddings (optionally plus the LLM's hidden states), a duration
predictor (frames per token), a length regulator that repeats each token's encoding for its frames, and a
non-autoregressive decoder that predicts every codec token of the segment at once.

Training durations come from a character-count prior (``alignment: uniform``, the default: each answer's frames
split over its tokens by their letters and digits) or from a learned monotonic alignment between the text and
the target codec tokens (``alignment: learned``, see :mod:`omnikit.components.speech_decoders.alignment`), so
it trains from (text, audio) pairs alone, with no external aligner. Against Whisper's word start times on 48
hibari sentences, the character prior was off by 91 ms on average (75 ms median) and the token-count split by
123 ms; the learned aligner overfitted so little data (126 ms from its prior alone, 350-490 ms after 100-300
steps). See ``docs/components/speech_decoder.md`` and ``benchmarks/bench_nar_duration.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnikit.components.speech_decoders.alignment import (
    MonotonicAligner,
    forward_sum_loss,
    uniform_durations,
    viterbi_durations,
)
from omnikit.components.speech_decoders.frontends import (
    FRONTENDS,
    FittedPrior,
    batch_symbols,
    prior_durations,
    vocab_size,
)
from omnikit.components.speech_decoders.layers import (
    DecoderLayer,
    RMSNorm,
    RotaryEmbedding,
    no_empty_rows,
    padding_mask,
    yield_in_chunks,
)
from omnikit.registry import param

ALIGNMENTS = ("learned", "uniform")
TARGETS = ("tokens", "features")
ARCHS = ("transformer", "conv")


@dataclass
class NARDurationConfig:
    frontend: str = param(
        "tokens",
        "Input: 'tokens' (the LLM's frozen token embeddings of the segment), 'chars' (the segment text's characters) "
        "or 'phonemes' (hibari's G2P of the text; needs hibari-tts). The symbol front ends read the text the "
        "objective and the session pass (`texts=` / `text=`); durations are then per symbol, by the character "
        "prior of omnikit.components.speech_decoders.frontends.",
    )
    target: str = param(
        "tokens",
        "Output: 'tokens' (cross-entropy over the codec's ids) or 'features' (L1 regression of the codec's "
        "normalised continuous token features, snapped to the nearest codebook entry at inference; needs a codec "
        "with token_features/nearest_tokens, e.g. mel_vq, and the cached_codec_token_ce or codec_token_ce "
        "objective).",
    )
    symbol_prior: str = param(
        "flat",
        "Symbol front ends' training durations: 'flat' (every letter, phoneme or pause mark weighs the same) or "
        "'fitted' (per-symbol weights fitted by ridge regression of utterance lengths on symbol counts, updated "
        "from every training batch; buffers `prior.*`).",
    )
    feature_dim: int = param(160, "Width of the codec's token features (target: features; mel_vq: n_mels x 2).")
    arch: str = param(
        "transformer",
        "Layers of the text encoder and frame decoder: 'transformer' (bidirectional self-attention) or 'conv' "
        "(residual dilated convolutions, SpeedySpeech-like: cheaper per frame on a CPU).",
    )
    dilations: list[int] = param(
        factory=lambda: [1, 2, 4, 8],
        doc="arch conv: dilations of the frame decoder's blocks, cycled over decoder_layers (the text encoder's "
        "blocks are undilated).",
    )
    dim: int = param(256, "Width of the text encoder and the frame decoder.")
    heads: int = param(4, "Attention heads; dim must be divisible by it.")
    ffn_dim: int = param(768, "SwiGLU hidden size.")
    encoder_layers: int = param(3, "Bidirectional transformer layers over the text tokens.")
    decoder_layers: int = param(4, "Bidirectional transformer layers over the codec frames.")
    conv_kernel: int = param(5, "Kernel of the convolutions (frame pre-conv, duration predictor).")
    duration_dim: int = param(256, "Channels of the duration predictor's two convolutions.")
    use_hidden: bool = param(
        False,
        "Build a projection for the LLM's last hidden states, added per token to the text input (zero-initialised, "
        "parameters `hidden_proj.*`: a later stage trains it alone, like Freeze-Omni's prefix stage). False: "
        "hidden states are ignored.",
    )
    alignment: str = param(
        "uniform",
        "Training durations: 'uniform' (each answer's frames split over its tokens by character count, from the "
        "objective's `token_weights`, else equal shares) or 'learned' (monotonic aligner + forward-sum loss + "
        "Viterbi, trained jointly; experimental: it overfitted small data in our measurement, see the docs).",
    )
    align_dim: int = param(128, "Width of the aligner's keys and queries.")
    align_prior: float = param(1.0, "Beta-binomial alignment prior scale (0: no prior).")
    duration_weight: float = param(1.0, "Weight of the log-duration MSE in the loss.")
    align_weight: float = param(1.0, "Weight of the forward-sum alignment loss (alignment: learned).")
    max_duration: int = param(60, "Most frames one token may get at inference.")
    duration_scale: float = param(1.0, "Inference speaking-rate knob: predicted durations are multiplied by it.")
    sample: bool = param(
        False,
        "Sample each frame from the top-k (the session's decoder_top_k) instead of taking the argmax. Frames are "
        "predicted independently, so sampling adds frame-level noise: off by default.",
    )
    dropout: float = param(0.1, "Residual dropout.")
    attention_dropout: float = param(0.0, "Dropout on attention probabilities.")
    rope_theta: float = param(10000.0, "RoPE base.")
    norm_eps: float = param(1e-6, "RMSNorm epsilon.")


def _layer(cfg: NARDurationConfig) -> DecoderLayer:
    return DecoderLayer(cfg.dim, cfg.heads, cfg.ffn_dim, cfg.dropout, cfg.attention_dropout, cfg.norm_eps)


class Transformer(nn.Module):
    """Bidirectional pre-norm transformer over a padded sequence (RoPE positions 0..L-1)."""

    def __init__(self, cfg: NARDurationConfig, layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_layer(cfg) for _ in range(layers))
        self.rotary = RotaryEmbedding(cfg.dim // cfg.heads, cfg.rope_theta)

    def forward(self, x: Tensor, lens: Tensor) -> Tensor:
        b, n, _ = x.shape
        cos, sin = self.rotary(torch.arange(n, device=x.device).expand(b, n), x.dtype)
        mask = no_empty_rows(padding_mask(lens, n)[:, None, None, :].expand(b, 1, n, n))
        for layer in self.layers:
            x, _ = layer(x, cos, sin, mask)
        return x


class ConvBlock(nn.Module):
    """Pre-norm residual block: LayerNorm -> dilated conv -> GELU -> pointwise linear -> dropout, added back."""

    def __init__(self, dim: int, kernel: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.conv = nn.Conv1d(dim, dim, kernel, padding=dilation * (kernel // 2), dilation=dilation)
        self.out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, m: Tensor) -> Tensor:
        y = self.conv((self.norm(x) * m).transpose(1, 2)).transpose(1, 2)
        return x + self.drop(self.out(F.gelu(y)))


class ConvStack(nn.Module):
    """Residual conv blocks over a padded sequence; padding is zeroed before every conv, so a padded item's
    outputs equal the item's alone."""

    def __init__(self, dim: int, layers: int, kernel: int, dilations: list[int], dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(ConvBlock(dim, kernel, dilations[i % len(dilations)], dropout)
                                    for i in range(layers))

    def forward(self, x: Tensor, lens: Tensor) -> Tensor:
        m = padding_mask(lens, x.shape[1])[..., None].to(x.dtype)
        for layer in self.layers:
            x = layer(x, m)
        return x * m


class DurationPredictor(nn.Module):
    """Two conv + ReLU + LayerNorm blocks and a linear output: log(1 + frames) per token."""

    def __init__(self, dim: int, hidden: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv1d(dim, hidden, kernel, padding=kernel // 2),
                                    nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2)])
        self.norms = nn.ModuleList([nn.LayerNorm(hidden), nn.LayerNorm(hidden)])
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, 1)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        m = valid[..., None].to(x.dtype)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = self.drop(norm(F.relu(conv((x * m).transpose(1, 2)).transpose(1, 2))))
        return self.out(x * m).squeeze(-1)


def length_regulate(x: Tensor, durations: Tensor, length: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Repeat token ``i`` of each item ``durations[b, i]`` times.

    Returns frames (B, T, D) (zero padded to ``length`` or the longest item), their valid lengths (B,) and
    within-token position features (B, T, 3): progress through the token, its mirror, log(1 + duration)/4.
    """
    b, n, d = x.shape
    lens = durations.sum(1)
    t = int(length if length is not None else max(int(lens.max()), 1))
    out = x.new_zeros(b, t, d)
    feats = x.new_zeros(b, t, 3)
    for i in range(b):
        dur = durations[i].clamp(min=0)
        idx = torch.repeat_interleave(torch.arange(n, device=x.device), dur)[:t]
        k = idx.numel()
        out[i, :k] = x[i, idx]
        starts = torch.cumsum(dur, 0) - dur
        within = torch.arange(k, device=x.device) - starts[idx]
        span = dur[idx].to(x.dtype)
        progress = (within.to(x.dtype) + 0.5) / span
        feats[i, :k] = torch.stack([progress, 1 - progress, torch.log1p(span) / 4], dim=-1)
    return out, lens.clamp(max=t), feats


class NARDurationSpeechDecoder(nn.Module):
    """Duration-aligned NAR decoder: text encoder -> durations -> length regulator -> NAR frame decoder.

    Loss = codec-token CE over the frames + ``duration_weight`` x MSE of log(1 + frames per token) +
    ``align_weight`` x forward-sum alignment loss (``alignment: learned``). In training the length regulator uses
    the aligner's Viterbi durations (or the character prior), at inference the predicted ones.
    ``generate`` predicts a whole segment in one pass and yields it in ``first_chunk``, then ``chunk``, tokens:
    the chunks concatenated are exactly :meth:`predict`'s output.

    Parameter name prefixes: ``in_proj.``, ``hidden_proj.`` (with ``use_hidden``), ``encoder.``, ``duration.``,
    ``aligner.``, ``frame_pos.``, ``pre_conv.``, ``decoder.``, ``norm.``, ``head.`` (see ``PARTS``).
    """

    config_class = NARDurationConfig
    accepts_token_weights = True
    PARTS = {
        "hidden": ("hidden_proj.",),
        "decoder": ("in_proj.", "symbol_embed.", "encoder.", "duration.", "aligner.", "frame_pos.", "pre_conv.",
                    "decoder.", "norm.", "head."),
    }

    def __init__(self, config: NARDurationConfig, *, cond_dim: int, codebook_size: int, **_: Any) -> None:
        super().__init__()
        for field, allowed in (("alignment", ALIGNMENTS), ("frontend", FRONTENDS), ("target", TARGETS),
                               ("arch", ARCHS)):
            if getattr(config, field) not in allowed:
                raise ValueError(f"{field} must be one of {allowed}, got {getattr(config, field)!r}")
        if config.arch == "transformer" and config.dim % config.heads:
            raise ValueError(f"dim {config.dim} is not divisible by heads {config.heads}")
        if config.symbol_prior not in ("flat", "fitted"):
            raise ValueError(f"symbol_prior must be one of ('flat', 'fitted'), got {config.symbol_prior!r}")
        if config.frontend != "tokens" and config.alignment == "learned":
            raise ValueError("alignment 'learned' needs frontend 'tokens' (its aligner reads token embeddings)")
        self.config, self.cond_dim, self.codebook_size = config, cond_dim, codebook_size
        self.symbolic = config.frontend != "tokens"
        self.accepts_texts = self.symbolic
        self.accepts_token_features = config.target == "features"
        self.in_proj: nn.Linear | None = None
        self.symbol_embed: nn.Embedding | None = None
        self.prior: FittedPrior | None = None
        if self.symbolic:
            self.symbol_embed = nn.Embedding(vocab_size(config.frontend), config.dim, padding_idx=0)
            if config.symbol_prior == "fitted":
                self.prior = FittedPrior(config.frontend)
        else:
            self.in_proj = nn.Linear(cond_dim, config.dim)
        self.hidden_proj: nn.Linear | None = None
        if config.use_hidden:
            self.hidden_proj = nn.Linear(cond_dim, config.dim)
            nn.init.zeros_(self.hidden_proj.weight)
            nn.init.zeros_(self.hidden_proj.bias)
        k = config.conv_kernel
        if config.arch == "conv":
            self.encoder: nn.Module = ConvStack(config.dim, config.encoder_layers, k, [1], config.dropout)
        else:
            self.encoder = Transformer(config, config.encoder_layers)
        self.duration = DurationPredictor(config.dim, config.duration_dim, k, config.dropout)
        self.aligner = (MonotonicAligner(cond_dim, codebook_size, config.align_dim, 3, config.align_prior)
                        if config.alignment == "learned" else None)
        self.frame_pos = nn.Linear(3, config.dim)
        self.pre_conv = nn.Conv1d(config.dim, config.dim, k, padding=k // 2, groups=config.dim)
        if config.arch == "conv":
            self.decoder: nn.Module = ConvStack(config.dim, config.decoder_layers, k, list(config.dilations),
                                                config.dropout)
        else:
            self.decoder = Transformer(config, config.decoder_layers)
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.head = nn.Linear(config.dim, config.feature_dim if config.target == "features" else codebook_size)
        self._codec: Any = None

    def bind_codec(self, codec: Any) -> None:
        """Keep ``codec`` for snapping predicted features to its codebook (``target: features``) when
        ``generate`` is called without ``codec=``."""
        self._codec = codec

    def trainable_parameters(self, part: str) -> Iterator[nn.Parameter]:
        """Parameters of one part: ``hidden`` (the hidden-state projection) or ``decoder`` (everything else)."""
        prefixes = self.PARTS[part]
        return (p for name, p in self.named_parameters() if name.startswith(prefixes))

    # ------------------------------------------------------------------ pieces
    @staticmethod
    def _match(hidden: Tensor, hidden_lens: Tensor, text_lens: Tensor, n: int) -> Tensor:
        """Hidden states resampled (nearest) to the text token count of each item; identity when counts agree
        (training: one hidden state per text token; at inference the segmenter's count can differ by a few)."""
        j = torch.arange(n, device=hidden.device, dtype=torch.float32)[None]
        ratio = hidden_lens.float()[:, None] / text_lens.clamp(min=1).float()[:, None]
        idx = torch.floor((j + 0.5) * ratio).long().clamp(min=0)
        idx = torch.minimum(idx, (hidden_lens - 1).clamp(min=0)[:, None])
        return hidden.gather(1, idx[..., None].expand(-1, -1, hidden.shape[-1]))

    def encode_text(self, text_emb: Tensor, text_lens: Tensor, hidden: Tensor | None = None,
                    hidden_lens: Tensor | None = None, symbols: Tensor | None = None) -> Tensor:
        """(B, N, cond_dim) token embeddings, or (B, N) symbol ids with a symbol front end (``text_lens`` then
        counts symbols) -> (B, N, dim) contextual encodings."""
        if self.symbol_embed is not None:
            if symbols is None:
                raise ValueError(f"nar_duration frontend {self.config.frontend!r} needs the segment text")
            x = self.symbol_embed(symbols)
        else:
            assert self.in_proj is not None
            x = self.in_proj(text_emb)
        if self.hidden_proj is not None and hidden is not None:
            if hidden_lens is None:
                hidden_lens = torch.full((hidden.shape[0],), hidden.shape[1], device=hidden.device)
            x = x + self.hidden_proj(self._match(hidden.to(x.dtype), hidden_lens, text_lens, x.shape[1]))
        valid = padding_mask(text_lens, x.shape[1])
        return self.encoder(x, text_lens) * valid[..., None]

    def symbols_of(self, texts: list[str], device: torch.device | str) -> tuple[Tensor, Tensor, Tensor]:
        """Symbol ids (B, n), prior weights (B, n) and lengths (B,) of texts (symbol front ends)."""
        return batch_symbols(list(texts), self.config.frontend, device)

    def decode_frames(self, enc: Tensor, durations: Tensor, length: int | None = None) -> tuple[Tensor, Tensor]:
        """Token encodings + durations -> codec logits (B, T, codebook_size) and frame lengths (B,)."""
        frames, lens, feats = length_regulate(enc, durations, length)
        x = frames + self.frame_pos(feats)
        valid = padding_mask(lens, x.shape[1])[..., None].to(x.dtype)
        x = x + self.pre_conv((x * valid).transpose(1, 2)).transpose(1, 2)
        x = self.decoder(x, lens)
        return self.head(self.norm(x)), lens

    def target_durations(self, text_emb: Tensor, text_lens: Tensor, tokens: Tensor, token_lens: Tensor,
                         token_weights: Tensor | None) -> tuple[Tensor, Tensor]:
        """Training durations (B, N) summing to ``token_lens``, and the alignment loss (0 for the prior)."""
        if self.aligner is None:
            weights = token_weights if token_weights is not None else torch.ones(text_emb.shape[:2],
                                                                                 device=text_emb.device)
            return uniform_durations(weights.to(text_emb.device), text_lens, token_lens), text_emb.new_zeros(())
        log_post = self.aligner(text_emb, text_lens, tokens, token_lens)
        return viterbi_durations(log_post.detach(), text_lens, token_lens), forward_sum_loss(log_post, text_lens,
                                                                                             token_lens)

    # ------------------------------------------------------------------ training
    def forward(
        self,
        text_emb: Tensor,
        text_lens: Tensor,
        hidden: Tensor | None,
        hidden_lens: Tensor | None,
        tokens: Tensor,
        token_lens: Tensor,
        token_weights: Tensor | None = None,
        texts: list[str] | None = None,
        token_features: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Loss and metrics. ``token_weights`` (B, N): relative spoken length of each text token (e.g. its
        character count), used by ``alignment: uniform``. ``texts``: the spoken texts (symbol front ends).
        ``token_features`` (B, T, feature_dim): the codec's normalised features of the frames (target: features).
        """
        cfg = self.config
        symbols = None
        if self.symbolic:
            if texts is None:
                raise ValueError(f"nar_duration frontend {cfg.frontend!r} needs texts=: train it with the "
                                 "cached_codec_token_ce or codec_token_ce objective")
            symbols, weights, text_lens = self.symbols_of(texts, tokens.device)
            if self.prior is not None:
                if self.training:
                    self.prior.update(symbols, text_lens, token_lens)
                weights = self.prior(symbols) * (weights > 0)
            durations, align_loss = prior_durations(weights, text_lens, token_lens), tokens.new_zeros((), dtype=torch.float32)
        else:
            durations, align_loss = self.target_durations(text_emb, text_lens, tokens, token_lens, token_weights)
        enc = self.encode_text(text_emb, text_lens, hidden, hidden_lens, symbols)
        valid_text = padding_mask(text_lens, enc.shape[1])
        log_dur = self.duration(enc.detach(), valid_text)
        target = torch.log1p(durations.to(log_dur.dtype))
        dur_loss = ((log_dur - target).pow(2) * valid_text).sum() / valid_text.sum().clamp(min=1)
        out, _ = self.decode_frames(enc, durations, tokens.shape[1])
        valid = padding_mask(token_lens, tokens.shape[1])
        metrics: dict[str, Tensor] = {}
        if cfg.target == "features":
            if token_features is None:
                raise ValueError("nar_duration target 'features' needs token_features= (a codec with token_features, "
                                 "e.g. mel_vq, through the cached_codec_token_ce or codec_token_ce objective)")
            if token_features.shape[-1] != out.shape[-1]:
                raise ValueError(f"codec features are {token_features.shape[-1]} wide, the decoder's feature_dim is "
                                 f"{out.shape[-1]}")
            feats = token_features[:, : out.shape[1]].to(out.dtype)
            err = (out[:, : feats.shape[1]] - feats).abs().mean(-1)
            v = valid[:, : feats.shape[1]]
            main = (err * v).sum() / v.sum().clamp(min=1)
            metrics["l1"] = main.detach()
        else:
            targets = tokens.masked_fill(~valid, -100)
            main = F.cross_entropy(out.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
            metrics["ce"] = main.detach()
            metrics["acc"] = ((out.argmax(-1) == tokens) & valid).sum() / valid.sum().clamp(min=1)
        loss = main + cfg.duration_weight * dur_loss + cfg.align_weight * align_loss
        return {"loss": loss, **metrics, "duration_loss": dur_loss.detach(), "align_loss": align_loss.detach(),
                "durations": durations}

    # ------------------------------------------------------------------ inference
    def predict_durations(self, enc: Tensor, text_lens: Tensor) -> Tensor:
        """Frames per token (B, N) from the duration predictor, scaled and clamped; at least one frame overall.

        Symbol front ends round the running total (symbols are often shorter than a frame: rounding each one
        alone would drift), token inputs round each token."""
        valid = padding_mask(text_lens, enc.shape[1])
        frames = torch.expm1(self.duration(enc, valid)).clamp(min=0) * self.config.duration_scale
        frames = frames.clamp(max=self.config.max_duration) * valid
        if self.symbolic:
            ends = torch.round(torch.cumsum(frames, 1)).long()
            d = torch.diff(ends, dim=1, prepend=torch.zeros_like(ends[:, :1]))
        else:
            d = torch.round(frames).long()
        d = d * valid.long()
        empty = d.sum(1) == 0
        if empty.any():
            d[empty, 0] = 1
        return d

    @torch.no_grad()
    def predict_logits(self, text_emb: Tensor, hidden: Tensor | None = None, text: str | None = None) -> Tensor:
        """Head outputs (T, codebook_size), or (T, feature_dim) features, of one segment (``text_emb``
        (1, N, cond_dim); ``text`` with a symbol front end)."""
        if text_emb.shape[0] != 1:
            raise ValueError("generation is batch 1: one segment of one user")
        symbols = None
        if self.symbolic:
            if text is None:
                raise ValueError(f"nar_duration frontend {self.config.frontend!r} needs generate(..., text=...)")
            symbols, _, lens = self.symbols_of([text], text_emb.device)
        else:
            lens = torch.tensor([text_emb.shape[1]], device=text_emb.device)
        enc = self.encode_text(text_emb, lens, hidden, None, symbols)
        logits, _ = self.decode_frames(enc, self.predict_durations(enc, lens))
        return logits[0]

    def _snap(self, features: Tensor, codec: Any) -> Tensor:
        codec = codec if codec is not None else self._codec
        if codec is None or not hasattr(codec, "nearest_tokens"):
            raise ValueError("nar_duration target 'features' snaps to the codec's codebook: pass codec= (a codec "
                             "with nearest_tokens, e.g. mel_vq) or call bind_codec(codec)")
        return codec.nearest_tokens(features[None].float())[0]

    @torch.no_grad()
    def predict(self, text_emb: Tensor, hidden: Tensor | None = None, text: str | None = None,
                codec: Any = None) -> Tensor:
        """Greedy codec tokens (T,) of one segment: the offline twin of :meth:`generate`."""
        out = self.predict_logits(text_emb, hidden, text)
        return self._snap(out, codec).long().cpu() if self.config.target == "features" else out.argmax(-1)

    @torch.no_grad()
    def generate(
        self,
        text_emb: Tensor,
        hidden: Tensor | None = None,
        top_k: int = 1,
        max_tokens: int = 1000,
        first_chunk: int = 20,
        chunk: int = 40,
        generator: torch.Generator | None = None,
        timings: dict[str, float] | None = None,
        text: str | None = None,
        codec: Any = None,
        **_: Any,
    ) -> Iterator[Tensor]:
        """Yield the segment's codec tokens (1-D long) in chunks of ``first_chunk``, then ``chunk``.

        The whole segment is predicted in one pass (``prefill_s`` in ``timings``), then streamed out; greedy
        unless the config says ``sample`` (then top-``top_k`` per frame with ``generator``). ``timings`` also
        gets ``first_chunk_s`` (prefill end -> first chunk), ``total_s`` and ``tokens``. ``text``: the segment's
        text (symbol front ends); ``codec``: the codec to snap features to (``target: features``).
        """
        t0 = time.perf_counter()
        out = self.predict_logits(text_emb, hidden, text)[:max_tokens]
        if self.config.target == "features":
            tokens = self._snap(out, codec)
        elif self.config.sample and top_k > 1:
            vals, idx = out.float().topk(min(top_k, out.shape[-1]), dim=-1)
            pick = torch.multinomial(torch.softmax(vals, -1).cpu(), 1, generator=generator).to(idx.device)
            tokens = idx.gather(-1, pick).squeeze(-1)
        else:
            tokens = out.argmax(-1)
        tokens = tokens.long().cpu()
        yield from yield_in_chunks(tokens, first_chunk, chunk, t0, time.perf_counter(), timings)
