"""energy VAD: the level threshold, smoothing, silence and config checks."""

from __future__ import annotations

import math

import pytest
import torch

from omnikit.components.vads.energy import EnergyVAD, EnergyVADConfig, rms_db
from omnikit.registry.catalog import get_registry


def tone(db: float, n: int = 512) -> torch.Tensor:
    """A 440 Hz sine whose RMS level is ``db`` dBFS."""
    amp = math.sqrt(2.0) * 10 ** (db / 20.0)
    return amp * torch.sin(2 * math.pi * 440 * torch.arange(n) / 16000)


def first_prob(vad: EnergyVAD, pcm: torch.Tensor) -> float:
    return vad.speech_prob(pcm, vad.init_state())[0]


def test_rms_db_of_a_known_tone_and_of_zeros():
    assert rms_db(tone(-20.0)) == pytest.approx(-20.0, abs=0.1)
    assert rms_db(torch.zeros(512)) == -120.0


def test_probability_crosses_half_at_the_level_threshold():
    vad = EnergyVAD(EnergyVADConfig(level_db=-40.0, slope_db=3.0))
    assert first_prob(vad, tone(-20.0)) > 0.99
    assert first_prob(vad, tone(-60.0)) < 0.01
    assert first_prob(vad, tone(-40.0)) == pytest.approx(0.5, abs=0.02)
    assert first_prob(vad, torch.zeros(512)) < 1e-9
    louder = EnergyVAD(EnergyVADConfig(level_db=-15.0))
    assert first_prob(louder, tone(-20.0)) < 0.5  # the same tone is "silence" for a higher threshold


def test_smoothing_delays_the_drop_after_speech():
    smooth = EnergyVAD(EnergyVADConfig(smoothing=0.8))
    instant = EnergyVAD(EnergyVADConfig(smoothing=0.0))
    for vad, expect_speech in ((smooth, True), (instant, False)):
        state = vad.init_state()
        for _ in range(5):
            _, state = vad.speech_prob(tone(-20.0), state)
        p, state = vad.speech_prob(tone(-70.0), state)
        assert (p >= vad.threshold) is expect_speech


def test_registered_and_config_checked():
    vad = get_registry("vad").build("energy", {"window": 256, "threshold": 0.7})
    assert (vad.window, vad.threshold, vad.sample_rate) == (256, 0.7, 16000)
    with pytest.raises(ValueError, match="smoothing"):
        EnergyVAD(EnergyVADConfig(smoothing=1.0))
