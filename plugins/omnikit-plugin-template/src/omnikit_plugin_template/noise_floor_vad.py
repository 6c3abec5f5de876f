"""A VAD that tracks the background level, so it keeps working when the noise gets louder or quieter."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from omnikit.registry import param


@dataclass
class NoiseFloorVADConfig:
    sample_rate: int = param(16000, "Audio rate (Hz) of the windows passed to `speech_prob`.")
    window: int = param(512, "Samples per decision (32 ms at 16 kHz).")
    margin_db: float = param(9.0, "How far above the noise floor (dB) a window is half-way to speech.")
    slope_db: float = param(2.0, "Width (dB) of the sigmoid that turns the level above the floor into a probability.")
    rise_db_per_s: float = param(3.0, "How fast the floor may rise (dB/s), so speech does not raise it quickly.")
    fall: float = param(0.5, "Smoothing towards a lower level (0..1 per window): the floor drops fast in quiet.")
    initial_floor_db: float | None = param(None, "Starting noise floor (dBFS); None: the first window's level.")


@dataclass
class NoiseFloorState:
    floor_db: float | None


class NoiseFloorVAD:
    """Energy VAD with an adaptive noise floor: speech is energy well above the tracked background level."""

    config_class = NoiseFloorVADConfig

    def __init__(self, config: NoiseFloorVADConfig):
        self.config = config
        self.sample_rate = config.sample_rate
        self.window = config.window

    def init_state(self) -> NoiseFloorState:
        return NoiseFloorState(self.config.initial_floor_db)

    def speech_prob(self, pcm: torch.Tensor, state: NoiseFloorState) -> tuple[float, NoiseFloorState]:
        """Probability that this window holds speech, and the updated floor."""
        c = self.config
        rms = float(pcm.float().pow(2).mean().sqrt()) if pcm.numel() else 0.0
        level = 20.0 * math.log10(rms + 1e-9)
        if state.floor_db is None:  # assume the stream starts with background, as a microphone does
            state = NoiseFloorState(level)
        prob = 1.0 / (1.0 + math.exp(-(level - state.floor_db - c.margin_db) / c.slope_db))
        if level < state.floor_db:  # quiet: follow the level down quickly
            floor = state.floor_db + c.fall * (level - state.floor_db)
        else:  # louder: rise slowly so a spoken sentence does not become "background"
            floor = min(level, state.floor_db + c.rise_db_per_s * self.window / self.sample_rate)
        return prob, NoiseFloorState(floor)
