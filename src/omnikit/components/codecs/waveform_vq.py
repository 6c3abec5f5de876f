"""``waveform_vq``: a TiCodec/SEANet-like convolutional single-codebook waveform codec (the paper-scale codec)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from omnikit.components.codecs.losses import LogMelL1Loss, MultiResolutionSTFTLoss
from omnikit.components.codecs.streaming import WindowedStreamingDecoder
from omnikit.components.codecs.vq import EMAVectorQuantizer
from omnikit.registry import param


@dataclass
class WaveformVQConfig:
    sample_rate: int = param(24_000, "Audio rate (Hz).")
    strides: list[int] = param(factory=lambda: [8, 5, 5, 3], doc="Decoder upsampling factors (the encoder uses them reversed); hop = their product.")
    kernels: list[int] = param(
        factory=lambda: [16, 11, 11, 5],
        doc="Up/downsampling kernel per stride (TiCodec's); [] derives 2*s + s%2. k - s must be even.",
    )
    channels: int = param(32, "Channels at the waveform end; doubled at each stride (32 -> 512 at paper size).")
    code_dim: int = param(512, "Dimension of the latent and of each code vector.")
    codebook_size: int = param(1024, "Codes in the single codebook.")
    resblock_kernels: list[int] = param(factory=lambda: [3, 7, 11], doc="Kernel sizes of the parallel ResBlocks.")
    resblock_dilations: list[int] = param(factory=lambda: [1, 3, 5], doc="Dilations inside each ResBlock.")
    ema_decay: float = param(0.99, "EMA decay of codebook statistics.")
    dead_code_threshold: float = param(1.0, "EMA usage below which a code is restarted at an encoder output.")
    commitment_weight: float = param(0.25, "Weight of the commitment loss.")
    stft_weight: float = param(1.0, "Weight of the multi-resolution STFT loss.")
    mel_weight: float = param(1.0, "Weight of the log-mel L1 loss.")
    stft_resolutions: list[list[int]] = param(
        factory=lambda: [[512, 128], [1024, 256], [2048, 512]], doc="(n_fft, hop) pairs of the STFT loss."
    )
    mel_n_fft: int = param(1024, "STFT size of the mel loss.")
    mel_hop: int = param(256, "Hop of the mel loss.")
    n_mels: int = param(80, "Mel bins of the mel loss.")


def _kernels(cfg: WaveformVQConfig) -> list[tuple[int, int, int]]:
    """(stride, kernel, padding) per decoder stage; ``k - s`` even maps n <-> n * s exactly both ways."""
    kernels = list(cfg.kernels) or [2 * s + s % 2 for s in cfg.strides]
    if len(kernels) != len(cfg.strides):
        raise ValueError(f"kernels {kernels} and strides {cfg.strides} differ in length")
    for s, k in zip(cfg.strides, kernels, strict=True):
        if k < s or (k - s) % 2:
            raise ValueError(f"kernel {k} for stride {s}: need k >= s and k - s even")
    return [(s, k, (k - s) // 2) for s, k in zip(cfg.strides, kernels, strict=True)]


class _ResBlock(nn.Module):
    """HiFi-GAN ResBlock1: for each dilation, LeakyReLU -> dilated conv -> LeakyReLU -> conv, residual."""

    def __init__(self, ch: int, kernel: int, dilations: list[int]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList([nn.Conv1d(ch, ch, kernel, dilation=d, padding=d * (kernel - 1) // 2) for d in dilations])
        self.convs2 = nn.ModuleList([nn.Conv1d(ch, ch, kernel, padding=(kernel - 1) // 2) for _ in dilations])

    def forward(self, x: Tensor) -> Tensor:
        act = nn.functional.leaky_relu
        for c1, c2 in zip(self.convs1, self.convs2, strict=True):
            x = x + c2(act(c1(act(x, 0.1)), 0.1))
        return x


class _MRF(nn.Module):
    """Multi-receptive-field fusion: the mean of parallel ResBlocks with different kernels."""

    def __init__(self, ch: int, kernels: list[int], dilations: list[int]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([_ResBlock(ch, k, dilations) for k in kernels])

    def forward(self, x: Tensor) -> Tensor:
        return sum(b(x) for b in self.blocks) / len(self.blocks)


class _Encoder(nn.Module):
    def __init__(self, cfg: WaveformVQConfig) -> None:
        super().__init__()
        ch = cfg.channels
        layers: list[nn.Module] = [nn.Conv1d(1, ch, 7, padding=3)]
        for s, k, p in reversed(_kernels(cfg)):  # mirror of the decoder: finest stride first
            layers += [_MRF(ch, cfg.resblock_kernels, cfg.resblock_dilations), nn.LeakyReLU(0.1)]
            layers.append(nn.Conv1d(ch, ch * 2, k, stride=s, padding=p))
            ch *= 2
        layers += [nn.LeakyReLU(0.1), nn.Conv1d(ch, cfg.code_dim, 7, padding=3)]
        self.net = nn.Sequential(*layers)

    def forward(self, wav: Tensor) -> Tensor:
        return self.net(wav[:, None])


class _Decoder(nn.Module):
    def __init__(self, cfg: WaveformVQConfig) -> None:
        super().__init__()
        ch = cfg.channels * 2 ** len(cfg.strides)
        layers: list[nn.Module] = [nn.Conv1d(cfg.code_dim, ch, 7, padding=3)]
        for s, k, p in _kernels(cfg):
            layers += [nn.LeakyReLU(0.1), nn.ConvTranspose1d(ch, ch // 2, k, stride=s, padding=p)]
            ch //= 2
            layers.append(_MRF(ch, cfg.resblock_kernels, cfg.resblock_dilations))
        layers += [nn.LeakyReLU(0.1), nn.Conv1d(ch, 1, 7, padding=3), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, q: Tensor) -> Tensor:
        return self.net(q)[:, 0]


class WaveformVQCodec(nn.Module):
    """Single-codebook convolutional waveform codec (TiCodec/SEANet-like; 24 kHz, hop 600, 1024 EMA codes).

    Encoder: Conv1d -> per stride [multi-receptive-field ResBlocks, LeakyReLU, strided Conv1d doubling
    channels] -> Conv1d to ``code_dim``. One EMA vector quantiser with dead-code restarts. Decoder: the mirror
    (transposed convolutions, HiFi-GAN ResBlock1 sets averaged, tanh). Losses: multi-resolution STFT,
    log-mel L1 and commitment; no adversarial term (add one in a custom objective if wanted). Unlike TiCodec
    there are no global (time-invariant) tokens: the output voice is whatever the training audio holds, one
    voice in Freeze-Omni's setting. Trains in the order of 100k steps on a GPU; on CPU use ``mel_vq``.
    """

    config_class = WaveformVQConfig

    def __init__(self, config: WaveformVQConfig, **context: object) -> None:
        super().__init__()
        self.config = config
        self.sample_rate = int(config.sample_rate)
        self.hop = math.prod(config.strides)
        self.samples_per_token = self.hop
        self.frame_rate = self.sample_rate / self.hop
        self.codebook_size = int(config.codebook_size)
        self.encoder = _Encoder(config)
        self.quantizer = EMAVectorQuantizer(
            config.codebook_size, config.code_dim, config.ema_decay, config.dead_code_threshold
        )
        self.decoder = _Decoder(config)
        self.stft_loss = MultiResolutionSTFTLoss(config.stft_resolutions)
        self.mel_loss = LogMelL1Loss(config.sample_rate, config.mel_n_fft, config.mel_hop, config.n_mels)

    def decoder_receptive_field(self) -> float:
        """Tokens of context on each side that one decoder output sample depends on (bound from kernel sizes)."""
        cfg = self.config
        per_mrf = max((k - 1) // 2 * sum(d + 1 for d in cfg.resblock_dilations) for k in cfg.resblock_kernels)
        rate, total = 1, 3.0  # samples per token at the current stage; the first Conv1d(k=7) at token rate
        for s, k, _ in _kernels(cfg):
            total += math.ceil(k / s / 2) / rate  # transposed conv: input samples on each side
            rate *= s
            total += per_mrf / rate
        return total + 3.0 / rate

    def _pad(self, wav: Tensor) -> Tensor:
        wav = wav if wav.dim() == 2 else wav.reshape(1, -1)
        n = -(-wav.shape[-1] // self.hop)
        return nn.functional.pad(wav, (0, n * self.hop - wav.shape[-1]))

    @torch.no_grad()
    def encode(self, wav: Tensor) -> Tensor:
        """(B, samples) -> (B, ceil(samples / hop)) tokens."""
        z = self.encoder(self._pad(wav.float()))
        b, d, n = z.shape
        return self.quantizer.quantize(z.transpose(1, 2).reshape(-1, d)).reshape(b, n)

    @torch.no_grad()
    def decode(self, tokens: Tensor) -> Tensor:
        """(B, N) tokens -> (B, N * hop) waveform."""
        tokens = tokens.long().to(self.quantizer.embed.device)
        if tokens.dim() == 1:
            tokens = tokens[None]
        return self.decoder(self.quantizer.lookup(tokens).transpose(1, 2))

    def streaming_decoder(self, first_chunk: int = 20, chunk: int = 40, context: int = 10) -> WindowedStreamingDecoder:
        """Windowed streaming decode; exact when ``decoder_receptive_field() <= context``."""
        return WindowedStreamingDecoder(lambda t: self.decode(t[None])[0], self.hop, first_chunk, chunk, context)

    @torch.no_grad()
    def fit_from_data(self, wavs: Iterable[Tensor]) -> None:
        """Initialise the codebook by k-means over encoder outputs of ``wavs`` (optional; else first batch)."""
        zs = [self.encoder(self._pad(w.float())).transpose(1, 2).reshape(-1, self.config.code_dim) for w in wavs]
        self.quantizer.init_from(torch.cat(zs))

    def reconstruction_loss(self, wav: Tensor) -> dict[str, Tensor]:
        """Autoencode (B, samples); STFT + mel + commitment losses, and codebook perplexity for logging."""
        target = self._pad(wav.float())
        q, idx, commitment = self.quantizer(self.encoder(target))
        pred = self.decoder(q)
        stft = self.stft_loss(pred, target)
        mel = self.mel_loss(pred, target)
        loss = self.config.stft_weight * stft + self.config.mel_weight * mel + self.config.commitment_weight * commitment
        p = torch.bincount(idx.reshape(-1), minlength=self.codebook_size).float()
        p = p / p.sum()
        perplexity = torch.exp(-(p[p > 0] * p[p > 0].log()).sum())
        return {"loss": loss, "stft": stft.detach(), "mel": mel.detach(), "commitment": commitment.detach(),
                "perplexity": perplexity}
