"""``mel_vq``: a CPU-trainable single-codebook codec in the log-mel domain (the quickstart's codec)."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torchaudio
from torch import Tensor, nn

from omnikit.components.codecs.kmeans import kmeans, nearest
from omnikit.components.codecs.losses import concrete_device
from omnikit.components.codecs.spectrogram_decoder import SpectrogramDecoder
from omnikit.components.codecs.streaming import WindowedStreamingDecoder
from omnikit.registry import param

VOCODERS = ("griffin_lim", "learned")


@dataclass
class MelVQConfig:
    sample_rate: int = param(16_000, "Audio rate (Hz) of encode input and decode output.")
    n_fft: int = param(800, "STFT size (samples) for the mel analysis and Griffin-Lim.")
    hop: int = param(200, "STFT hop (samples) between mel frames.")
    n_mels: int = param(80, "Mel bins per frame.")
    frames_per_token: int = param(2, "Consecutive mel frames stacked into one token (2 x hop 200 = 40 tokens/s).")
    codebook_size: int = param(1024, "Number of codes in the single codebook (k-means centroids).")
    log_eps: float = param(
        1e-2, "Floor inside log(mel + eps): additive (keeps gradients alive); 1e-2 spends no codes below -40 dB."
    )
    vocoder: str = param("griffin_lim", "Decode path: griffin_lim (codebook mel -> inverse mel -> GL) or learned.")
    griffin_lim_iters: int = param(32, "Griffin-Lim iterations per decode.")
    kmeans_iters: int = param(15, "Lloyd iterations in fit_from_data (stops early when the error settles).")
    kmeans_max_vectors: int = param(60_000, "Token vectors sampled for k-means (more are subsampled).")
    seed: int = param(0, "Seed for k-means seeding and subsampling.")
    decoder_dim: int = param(256, "Width of the learned spectrogram decoder.")
    decoder_dilations: list[int] = param(
        factory=lambda: [1, 2, 4, 1], doc="Dilations of the learned decoder's kernel-3 blocks (receptive field = sum)."
    )
    decoder_dropout: float = param(0.0, "Dropout in the learned decoder blocks.")


class MelVQCodec(nn.Module):
    """Single-codebook log-mel k-means codec (40 tokens/s at 16 kHz), Griffin-Lim or learned decoding.

    Encoding: log-mel frames (torchaudio ``MelSpectrogram``, magnitude, ``log(mel + eps)``) are stacked in
    groups of ``frames_per_token`` and quantised to the nearest of ``codebook_size`` centroids fitted by
    k-means in ``fit_from_data`` (no gradient). Decoding has two vocoders, chosen by ``vocoder``:

    * ``griffin_lim``: codebook lookup -> mel magnitudes -> ``InverseMelScale`` -> Griffin-Lim. Needs no
      training beyond the k-means fit.
    * ``learned``: codebook lookup -> the codebook log-mel frames plus a correction predicted by a small
      dilated-conv network over the token sequence (finite receptive field, ``sum(decoder_dilations)`` tokens
      each side) -> the same inverse mel + Griffin-Lim. The correction starts at zero (untrained = the
      Griffin-Lim path) and learns to undo part of the quantisation error from context. Trained by gradient
      through ``reconstruction_loss`` (log-mel L1); the codebook stays fixed.

    All state is in buffers and parameters, so ``state_dict`` (and safetensors) round-trips the fitted codec.
    """

    config_class = MelVQConfig

    def __init__(self, config: MelVQConfig, **context: object) -> None:
        super().__init__()
        if config.vocoder not in VOCODERS:
            raise ValueError(f"vocoder must be one of {VOCODERS}, got {config.vocoder!r}")
        self.config = config
        self.sample_rate = int(config.sample_rate)
        self.samples_per_token = config.hop * config.frames_per_token
        self.frame_rate = self.sample_rate / self.samples_per_token
        self.codebook_size = int(config.codebook_size)
        self.n_freq = config.n_fft // 2 + 1
        self.token_dim = config.n_mels * config.frames_per_token
        with concrete_device():
            self.mel = torchaudio.transforms.MelSpectrogram(
                sample_rate=config.sample_rate, n_fft=config.n_fft, hop_length=config.hop, n_mels=config.n_mels,
                power=1.0,
            )
            inverse_mel = torchaudio.transforms.InverseMelScale(
                n_stft=self.n_freq, n_mels=config.n_mels, sample_rate=config.sample_rate
            )
            # InverseMelScale solves fb^T x = mel by least squares (minimum norm, 80 equations for 401 bins);
            # that solution is pinv(fb^T) @ mel, precomputed once so decoding needs no solver call.
            mel_pinv = torch.linalg.pinv(inverse_mel.fb.T)
        self.register_buffer("mel_pinv", mel_pinv, persistent=False)  # (n_freq, n_mels)
        self.register_buffer("gl_window", torch.hann_window(config.n_fft), persistent=False)
        g = torch.Generator().manual_seed(config.seed)
        # Unfitted codebook: plausible quiet log-mel vectors, so an unfitted codec still runs end to end.
        self.register_buffer("codebook", -6.0 + torch.randn(self.codebook_size, self.token_dim, generator=g))
        self.register_buffer("feat_mean", torch.zeros(self.token_dim))
        self.register_buffer("feat_std", torch.ones(self.token_dim))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self._warned_unfitted = False
        self.decoder = SpectrogramDecoder(
            self.token_dim,
            config.n_mels,
            config.frames_per_token,
            config.decoder_dim,
            list(config.decoder_dilations),
            config.decoder_dropout,
        )
        # The network learns a correction to the codebook's log-mel: zero output at init, so the untrained
        # learned vocoder decodes exactly like the Griffin-Lim path and training only moves it from there.
        nn.init.zeros_(self.decoder.out.weight)
        nn.init.zeros_(self.decoder.out.bias)

    # -- features -----------------------------------------------------------------------------
    def _pad(self, wav: Tensor) -> Tensor:
        wav = wav if wav.dim() == 2 else wav.reshape(1, -1)
        n = -(-wav.shape[-1] // self.samples_per_token)
        return torch.nn.functional.pad(wav, (0, n * self.samples_per_token - wav.shape[-1]))

    def _frames(self, x: Tensor, n_tokens: int) -> Tensor:
        return x[..., : n_tokens * self.config.frames_per_token]

    def log_mel(self, wav: Tensor) -> Tensor:
        """(B, samples) -> (B, n_mels, N * frames_per_token) natural-log mel magnitudes, padded to whole tokens."""
        wav = self._pad(wav.float())
        n = wav.shape[-1] // self.samples_per_token
        return self._frames(torch.log(self.mel(wav) + self.config.log_eps), n)

    def token_vectors(self, wav: Tensor) -> Tensor:
        """(B, samples) -> (B, N, n_mels * frames_per_token): stacked log-mel frames, one vector per token."""
        lm = self.log_mel(wav).transpose(1, 2)  # (B, T, M)
        b, t, m = lm.shape
        return lm.reshape(b, t // self.config.frames_per_token, self.token_dim)

    # -- codec API ----------------------------------------------------------------------------
    @torch.no_grad()
    def fit_from_data(self, wavs: Iterable[Tensor]) -> None:
        """Fit the codebook by k-means over the token vectors of ``wavs`` (each (samples,) or (B, samples))."""
        vecs = torch.cat([self.token_vectors(w.to(self.codebook.device)).reshape(-1, self.token_dim) for w in wavs])
        g = torch.Generator().manual_seed(self.config.seed)
        if vecs.shape[0] > self.config.kmeans_max_vectors:
            vecs = vecs[torch.randperm(vecs.shape[0], generator=g)[: self.config.kmeans_max_vectors]]
        centroids, _ = kmeans(vecs, self.codebook_size, iters=self.config.kmeans_iters, seed=self.config.seed)
        self.codebook.copy_(centroids)
        self.feat_mean.copy_(vecs.mean(0))
        self.feat_std.copy_(vecs.std(0).clamp_min(1e-3))
        self.fitted.fill_(True)

    @torch.no_grad()
    def encode(self, wav: Tensor) -> Tensor:
        """(B, samples) at ``sample_rate`` -> (B, N) tokens, N = ceil(samples / samples_per_token)."""
        v = self.token_vectors(wav.to(self.codebook.device))
        b, n, d = v.shape
        return nearest(v.reshape(-1, d), self.codebook)[0].reshape(b, n)

    @torch.no_grad()
    def token_features(self, wav: Tensor) -> Tensor:
        """(B, samples) -> (B, N, n_mels * frames_per_token): the continuous vectors ``encode`` quantises,
        normalised by the fitted ``feat_mean``/``feat_std`` (what a decoder with continuous targets regresses)."""
        v = self.token_vectors(wav.to(self.codebook.device))
        return (v - self.feat_mean) / self.feat_std

    @torch.no_grad()
    def nearest_tokens(self, features: Tensor) -> Tensor:
        """(B, N, n_mels * frames_per_token) normalised features (as ``token_features`` gives) -> (B, N) ids of
        the nearest codebook entries: ``nearest_tokens(token_features(wav)) == encode(wav)``."""
        f = features.to(self.codebook.device, self.codebook.dtype)
        b, n, d = f.shape
        v = f * self.feat_std + self.feat_mean
        return nearest(v.reshape(-1, d), self.codebook)[0].reshape(b, n)

    def quantisation_error(self, wav: Tensor) -> Tensor:
        """Mean squared distance between token vectors and their nearest centroid (lower is a better fit)."""
        v = self.token_vectors(wav.to(self.codebook.device)).reshape(-1, self.token_dim)
        return nearest(v, self.codebook)[1].mean()

    def inverse_mel_magnitude(self, log_mel: Tensor) -> Tensor:
        """(B, n_mels, T) log-mel -> (B, n_freq, T) linear STFT magnitudes by least squares (InverseMelScale)."""
        mel = (torch.exp(log_mel) - self.config.log_eps).clamp_min(0)
        return (self.mel_pinv @ mel).clamp_min(0)

    def _codebook_log_mel(self, tokens: Tensor) -> Tensor:
        b, n = tokens.shape
        frames = self.codebook[tokens].reshape(b, n * self.config.frames_per_token, self.config.n_mels)
        return frames.transpose(1, 2)

    def predict_log_mel(self, tokens: Tensor) -> Tensor:
        """The learned decoder: (B, N) tokens -> (B, n_mels, N * frames_per_token) refined log-mel.

        The codebook's log-mel frames plus a correction predicted from the surrounding tokens.
        """
        x = (self.codebook[tokens] - self.feat_mean) / self.feat_std
        return self._codebook_log_mel(tokens) + self.decoder(x).transpose(1, 2)

    def _griffin_lim(self, magnitude: Tensor, length: int) -> Tensor:
        # Centred STFT of ``length = T * hop`` samples has T + 1 frames: repeat the last frame to match.
        magnitude = torch.cat([magnitude, magnitude[..., -1:]], dim=-1)
        return torchaudio.functional.griffinlim(
            magnitude,
            self.gl_window,
            self.config.n_fft,
            self.config.hop,
            self.config.n_fft,
            1.0,
            self.config.griffin_lim_iters,
            0.99,
            length,
            False,
        )

    @torch.no_grad()
    def decode_log_mel(self, log_mel: Tensor) -> Tensor:
        """(B, n_mels, T) log-mel -> (B, T * hop) waveform by inverse mel + Griffin-Lim (reference path)."""
        t, hop = log_mel.shape[-1], self.config.hop
        # a centred STFT reflect-pads n_fft / 2 samples: a window this short (a streaming tail of one token) is
        # padded with its last frame and the waveform trimmed back
        short = -(-self.config.n_fft // hop) + 1 - t
        if short > 0:
            log_mel = torch.cat([log_mel, log_mel[..., -1:].expand(*log_mel.shape[:-1], short)], dim=-1)
        return self._griffin_lim(self.inverse_mel_magnitude(log_mel), log_mel.shape[-1] * hop)[..., : t * hop]

    @torch.no_grad()
    def decode(self, tokens: Tensor) -> Tensor:
        """(B, N) tokens -> (B, N * samples_per_token) waveform with the configured vocoder."""
        tokens = tokens.to(self.codebook.device).long()
        if tokens.dim() == 1:
            tokens = tokens[None]
        b, n = tokens.shape
        if n == 0:
            return torch.zeros(b, 0, device=self.codebook.device)
        if self.config.vocoder == "learned":
            return self.decode_log_mel(self.predict_log_mel(tokens))
        return self.decode_log_mel(self._codebook_log_mel(tokens))

    def streaming_decoder(self, first_chunk: int = 20, chunk: int = 40, context: int = 10) -> WindowedStreamingDecoder:
        """Windowed streaming decode (see ``omnikit.components.codecs.streaming``)."""
        return WindowedStreamingDecoder(
            lambda t: self.decode(t[None])[0], self.samples_per_token, first_chunk, chunk, context
        )

    @torch.no_grad()
    def decoder_targets(self, wav: Tensor) -> dict[str, Tensor]:
        """What the learned decoder trains on, for (B, samples): tokens and the true log-mel frames.

        Precompute these once per utterance to train faster than calling ``reconstruction_loss`` on audio.
        """
        wav = wav.to(self.codebook.device)
        return {"tokens": self.encode(wav), "log_mel": self.log_mel(wav)}

    def decoder_loss(self, tokens: Tensor, log_mel: Tensor) -> dict[str, Tensor]:
        """L1 between refined and true log-mel; ``codebook_l1`` is the same for the plain codebook lookup."""
        pred = self.predict_log_mel(tokens)
        loss = (pred - log_mel).abs().mean()
        with torch.no_grad():
            codebook_l1 = (self._codebook_log_mel(tokens) - log_mel).abs().mean()
        return {"loss": loss, "log_mel_l1": loss.detach(), "codebook_l1": codebook_l1}

    def reconstruction_loss(self, wav: Tensor) -> dict[str, Tensor]:
        """Learned-decoder losses for a batch of audio (B, samples); the codebook is fixed (k-means)."""
        if not self._warned_unfitted and not bool(self.fitted):
            self._warned_unfitted = True
            warnings.warn(
                "mel_vq: training the learned decoder on an unfitted codebook; call fit_from_data first", stacklevel=2
            )
        return self.decoder_loss(**self.decoder_targets(wav))


__all__ = ["MelVQCodec", "MelVQConfig"]
