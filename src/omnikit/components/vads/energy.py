"""A fixed-threshold energy VAD: smoothed RMS level in dBFS against a set level. No model, no adaptation.

Useful as a dependency-free baseline, in tests, and for clean close-talk audio. It cannot tell speech from
loud noise; use ``silero`` (or the template plugin's noise-floor VAD) when the background varies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from omnikit.registry import param

SILENCE_DB = -120.0
"""Level reported for an all-zero window."""


@dataclass
class EnergyVADConfig:
    sample_rate: int = param(16000, "Audio rate (Hz) of the windows passed to `speech_prob`.")
    window: int = param(512, "Samples per decision (32 ms at 16 kHz).")
    level_db: float = param(-40.0, "Smoothed RMS level (dBFS) at which the speech probability is 0.5.")
    slope_db: float = param(3.0, "Width (dB) of the sigmoid mapping level above `level_db` to a probability.")
    smoothing: float = param(
        0.5, "Weight of the previous smoothed level (0..1): 0 = no smoothing, higher = slower to react."
    )
    threshold: float = param(0.5, "Speech when the probability is at least this (0.5: level >= `level_db`).")


@dataclass
class EnergyState:
    smoothed_db: float | None = None


def rms_db(pcm: Tensor) -> float:
    """RMS level of ``pcm`` in dB relative to full scale (1.0)."""
    if pcm.numel() == 0:
        return SILENCE_DB
    rms = float(pcm.detach().float().pow(2).mean().sqrt())
    return max(SILENCE_DB, 20.0 * math.log10(rms)) if rms > 0 else SILENCE_DB


class EnergyVAD:
    """Fixed-threshold RMS-energy VAD with exponential smoothing of the level (dBFS)."""

    config_class = EnergyVADConfig

    def __init__(self, config: EnergyVADConfig):
        if not 0.0 <= config.smoothing < 1.0:
            raise ValueError(f"energy VAD: smoothing must be in [0, 1), got {config.smoothing}")
        if config.slope_db <= 0:
            raise ValueError(f"energy VAD: slope_db must be > 0, got {config.slope_db}")
        self.config = config
        self.sample_rate = config.sample_rate
        self.window = config.window
        self.threshold = config.threshold

    def init_state(self) -> EnergyState:
        return EnergyState()

    def speech_prob(self, pcm: Tensor, state: EnergyState) -> tuple[float, EnergyState]:
        """Sigmoid of the smoothed level above ``level_db``; the first window sets the smoothed level."""
        c = self.config
        level = rms_db(pcm)
        prev = state.smoothed_db
        smoothed = level if prev is None else c.smoothing * prev + (1.0 - c.smoothing) * level
        z = (smoothed - c.level_db) / c.slope_db
        prob = 1.0 / (1.0 + math.exp(-z)) if z > -60 else 0.0
        return prob, EnergyState(smoothed)
