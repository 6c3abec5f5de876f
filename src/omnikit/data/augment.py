"""Training-time augmentation: speed perturbation and additive noise on the waveform, SpecAugment on fbank."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch
import torchaudio.functional as AF
from torch import Tensor

from omnikit.registry.fields import config_from_mapping, param


@dataclass
class AugmentConfig:
    """Stage option ``batch.augment`` (all off by default, as in Freeze-Omni's stage-3 config except SpecAugment)."""

    speed: list[float] = param(doc="Speed factors drawn uniformly, e.g. [0.9, 1.0, 1.1].", factory=lambda: [1.0])
    noise_prob: float = param(0.0, "Probability of adding white noise.")
    noise_snr_db: list[float] = param(doc="SNR range of that noise (dB).", factory=lambda: [15.0, 30.0])
    time_masks: int = param(0, "SpecAugment time masks per utterance.")
    time_mask_width: int = param(20, "Widest time mask (frames).")
    freq_masks: int = param(0, "SpecAugment frequency masks per utterance.")
    freq_mask_width: int = param(10, "Widest frequency mask (bins).")

    @classmethod
    def from_mapping(cls, d: Any, path: str = "batch.augment") -> AugmentConfig:
        return config_from_mapping(cls, d, path)


class Augmenter:
    """Applies :class:`AugmentConfig` with its own RNG (seeded per data-loader worker by lhotse/torch)."""

    def __init__(self, config: AugmentConfig, sample_rate: int = 16_000, seed: int | None = None):
        self.config = config
        self.sample_rate = sample_rate
        self.rng = random.Random(seed)

    @property
    def active(self) -> bool:
        c = self.config
        return any(s != 1.0 for s in c.speed) or c.noise_prob > 0 or c.time_masks > 0 or c.freq_masks > 0

    @property
    def changes_waveform(self) -> bool:
        return any(s != 1.0 for s in self.config.speed) or self.config.noise_prob > 0

    def waveform(self, wav: Tensor) -> Tensor:
        """Speed (resampling, so pitch moves too, as Kaldi's speed perturbation) and white noise."""
        c = self.config
        factor = self.rng.choice(c.speed)
        if factor != 1.0:
            wav = AF.resample(wav, orig_freq=int(round(self.sample_rate * factor)), new_freq=self.sample_rate)
        if c.noise_prob > 0 and self.rng.random() < c.noise_prob:
            snr = self.rng.uniform(*c.noise_snr_db)
            power = wav.pow(2).mean().clamp_min(1e-10)
            gen = torch.Generator().manual_seed(self.rng.randrange(2**31))
            wav = wav + torch.randn(wav.shape, generator=gen) * (power / 10 ** (snr / 10)).sqrt()
        return wav

    def spec(self, feats: Tensor) -> Tensor:
        """SpecAugment masks on ``(T, F)`` features (filled with the utterance mean)."""
        c = self.config
        if c.time_masks == 0 and c.freq_masks == 0:
            return feats
        feats = feats.clone()
        fill = feats.mean()
        t, f = feats.shape
        for _ in range(c.time_masks):
            w = self.rng.randint(0, min(c.time_mask_width, max(t // 5, 0)))
            s = self.rng.randint(0, max(t - w, 0))
            feats[s : s + w] = fill
        for _ in range(c.freq_masks):
            w = self.rng.randint(0, min(c.freq_mask_width, f))
            s = self.rng.randint(0, max(f - w, 0))
            feats[:, s : s + w] = fill
        return feats
