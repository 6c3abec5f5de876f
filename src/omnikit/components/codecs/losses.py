"""Waveform reconstruction losses shared by the neural codecs: multi-resolution STFT and log-mel L1."""

from __future__ import annotations

import torch
import torchaudio
from torch import Tensor, nn


def concrete_device() -> torch.device:
    """A device context for torchaudio transforms, which read their filterbanks back while building.

    Under ``with torch.device("meta")`` (shape-only construction of paper-size models) they are built on CPU
    instead; the buffers are small. Elsewhere the current default device is kept.
    """
    current = torch.get_default_device()
    return torch.device("cpu") if current.type == "meta" else current


class MultiResolutionSTFTLoss(nn.Module):
    """Sum over resolutions of spectral convergence + L1 of log magnitudes (Parallel WaveGAN style)."""

    def __init__(self, resolutions: list[list[int]], eps: float = 1e-5) -> None:
        super().__init__()
        self.resolutions = [(int(n), int(h)) for n, h in resolutions]
        self.eps = eps
        for n, _ in self.resolutions:
            self.register_buffer(f"window_{n}", torch.hann_window(n), persistent=False)

    def _mag(self, x: Tensor, n_fft: int, hop: int) -> Tensor:
        window = getattr(self, f"window_{n_fft}")
        spec = torch.stft(x, n_fft, hop, n_fft, window, return_complex=True)
        return (spec.real.square() + spec.imag.square() + self.eps).sqrt()

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        total = pred.new_zeros(())
        for n_fft, hop in self.resolutions:
            p, t = self._mag(pred, n_fft, hop), self._mag(target, n_fft, hop)
            sc = torch.linalg.vector_norm(t - p, dim=(-2, -1)) / torch.linalg.vector_norm(t, dim=(-2, -1)).clamp_min(
                self.eps
            )
            total = total + sc.mean() + (p.log() - t.log()).abs().mean()
        return total / len(self.resolutions)


class LogMelL1Loss(nn.Module):
    """L1 between ``log(mel + eps)`` of prediction and target (an additive floor keeps silent outputs trainable)."""

    def __init__(self, sample_rate: int, n_fft: int, hop: int, n_mels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        with concrete_device():
            self.mel = torchaudio.transforms.MelSpectrogram(
                sample_rate=sample_rate, n_fft=n_fft, hop_length=hop, n_mels=n_mels, power=1.0
            )

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return (torch.log(self.mel(pred) + self.eps) - torch.log(self.mel(target) + self.eps)).abs().mean()
