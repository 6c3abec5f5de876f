import math

import torch
from omnikit_plugin_template.noise_floor_vad import NoiseFloorVAD, NoiseFloorVADConfig

from omnikit.testing import check_vad


def run(vad: NoiseFloorVAD, wav: torch.Tensor) -> list[float]:
    state, probs = vad.init_state(), []
    for i in range(0, wav.numel() - vad.window + 1, vad.window):
        p, state = vad.speech_prob(wav[i : i + vad.window], state)
        probs.append(p)
    return probs


def test_burst_over_noise_is_speech_and_noise_is_not():
    g = torch.Generator().manual_seed(0)
    vad = NoiseFloorVAD(NoiseFloorVADConfig())
    noise = 0.01 * torch.randn(16000 * 3, generator=g)
    t = torch.arange(16000) / 16000
    burst = 0.3 * torch.sin(2 * math.pi * 220 * t) * (1 + torch.sin(2 * math.pi * 4 * t)) / 2
    wav = noise.clone()
    wav[32000:48000] += burst
    probs = run(vad, wav)
    per_s = len(probs) // 3
    assert max(probs[per_s // 2 : per_s * 2 - 2]) < 0.5  # steady noise, after the floor settles
    assert sum(p > 0.5 for p in probs[per_s * 2 :]) > per_s * 0.6


def test_floor_adapts_to_louder_noise():
    g = torch.Generator().manual_seed(1)
    vad = NoiseFloorVAD(NoiseFloorVADConfig())
    wav = torch.cat([0.003 * torch.randn(16000, generator=g), 0.03 * torch.randn(16000 * 8, generator=g)])
    probs = run(vad, wav)
    assert probs[40] > 0.5  # the sudden jump looks like speech at first ...
    assert probs[-1] < 0.5  # ... but a steady louder background is learnt as the new floor


def test_conforms_to_the_vad_contract():
    """omnikit's conformance kit: the VAD contract's members, probabilities in [0, 1], and state that is a value
    (interleaved streams and a reused state give what a lone stream gives)."""
    check_vad(NoiseFloorVAD(NoiseFloorVADConfig()))
    check_vad(NoiseFloorVAD(NoiseFloorVADConfig(sample_rate=8000, window=256, initial_floor_db=-60.0)))
