"""Synthesis with hibari-tts, the assistant's voice (bundled voice ``heart``, 24 kHz, ONNX on CPU).

Install with ``pip install hibari-tts`` (the ``world`` extra). The engine is loaded once per process and
per (voice, threads); calls are thread-unsafe, so use one process per synthesis worker.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import numpy as np

DEFAULT_VOICE = "heart"
"""The voice that ships inside the package (US English, female); others download on first use."""


@lru_cache(maxsize=4)
def _engine(voice: str, threads: int) -> Any:
    try:
        from hibari import Hibari
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("hibari-tts is not installed: pip install hibari-tts (omnikit[world])") from e
    return Hibari(voice=voice, threads=threads)


def sample_rate() -> int:
    """hibari's output rate in Hz (24000)."""
    from hibari import SAMPLE_RATE

    return int(SAMPLE_RATE)


LONG_NUMBER = re.compile(r"\d{13,}")
"""Digit runs hibari's number reader cannot name (it stops at the trillions): read them digit by digit."""


def synthesize(
    text: str, speed: float = 1.0, seed: int | None = 0, voice: str = DEFAULT_VOICE, threads: int = 1
) -> tuple[np.ndarray, int]:
    """Text -> ``(wav, sr)``: float32 mono in [-1, 1] at hibari's 24 kHz.

    ``speed`` 1.0 is the voice's natural pace (0.5 slow .. 2.0 fast). ``seed`` fixes the noise component so
    that repeated calls are bit-identical (``None`` draws fresh noise each call).
    """
    tts = _engine(voice, threads)
    text = LONG_NUMBER.sub(lambda m: " ".join(m.group()), text)
    wav = np.asarray(tts(text, speed=speed, seed=seed), dtype=np.float32)
    return wav, int(tts.sample_rate)
