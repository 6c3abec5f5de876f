"""User and assistant voices of the speech world, behind one ``speak`` call.

A voice id is ``engine:name``: ``hibari:heart`` (natural, the assistant's voice), ``piper:joe`` (natural) or
``espeak:<accent>`` (robotic; each utterance draws a variant, speed, pitch and word gap). The id is what splits
act on (a held-out voice never appears in training); the per-utterance details are recorded separately.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd

import numpy as np
from scipy.signal import resample_poly

from omnikit.data.tts import espeak

DEFAULT_VOICES = (
    "hibari:heart",
    "piper:joe",
    *(f"espeak:{a}" for a in espeak.ACCENTS),
)
"""Every voice that ships offline: 2 natural voices and the 8 espeak-ng English accents."""


@dataclass
class Utterance:
    """One synthesised utterance, trimmed to its speech (edges within ~10 ms)."""

    wav: np.ndarray  # float32 mono at ``sample_rate``
    sample_rate: int
    voice: str  # the voice id (split unit)
    detail: str  # engine settings used for this utterance


def resample(wav: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling (exact rational ratio), float32 out."""
    if sr_in == sr_out:
        return wav.astype(np.float32)
    g = gcd(sr_in, sr_out)
    return resample_poly(wav, sr_out // g, sr_in // g).astype(np.float32)


def trim_silence(wav: np.ndarray, sr: int, threshold_db: float = -40.0, margin_s: float = 0.01) -> np.ndarray:
    """Cut leading and trailing silence: 10 ms frames quieter than ``threshold_db`` below the peak frame."""
    hop = max(1, sr // 100)
    n = len(wav) // hop
    if n == 0:
        return wav
    frames = wav[: n * hop].reshape(n, hop)
    energy = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    loud = np.flatnonzero(energy > energy.max() + threshold_db)
    if len(loud) == 0:
        return wav
    margin = int(margin_s * sr)
    start = max(0, loud[0] * hop - margin)
    end = min(len(wav), (loud[-1] + 1) * hop + margin)
    return wav[start:end]


def _hibari(text: str, rng: np.random.Generator, speed_range: tuple[float, float]) -> tuple[np.ndarray, int, str]:
    from omnikit.data.tts import hibari

    speed = float(np.round(rng.uniform(*speed_range), 3))
    seed = int(rng.integers(0, 2**31 - 1))
    wav, sr = hibari.synthesize(text, speed=speed, seed=seed)
    return wav, sr, f"hibari:heart speed={speed}"


def _piper(
    text: str, name: str, rng: np.random.Generator, speed_range: tuple[float, float], noise: float
) -> tuple[np.ndarray, int, str]:
    from omnikit.data.tts import piper

    length = float(np.round(1.0 / rng.uniform(*speed_range), 3))
    wav, sr = piper.synthesize(text, voice=name, length_scale=length, noise_scale=noise, noise_w_scale=noise)
    return wav, sr, f"piper:{name} length_scale={length} noise={noise}"


def _espeak(
    text: str, accent: str, rng: np.random.Generator, speed_range: tuple[float, float]
) -> tuple[np.ndarray, int, str]:
    variant = str(rng.choice(espeak.VARIANTS))
    wpm = int(round(165 * rng.uniform(*speed_range)))
    pitch = int(rng.integers(25, 76))
    gap = int(rng.choice([0, 0, 0, 1, 2, 3]))
    wav, sr = espeak.synthesize(text, accent=accent, variant=variant, speed=wpm, pitch=pitch, word_gap=gap)
    return wav, sr, f"espeak:{accent}+{variant} wpm={wpm} pitch={pitch} gap={gap}"


def speak(
    voice: str,
    text: str,
    rng: np.random.Generator,
    sample_rate: int = 16_000,
    speed_range: tuple[float, float] = (0.85, 1.2),
    piper_noise: float = 0.0,
) -> Utterance:
    """Synthesise ``text`` with voice id ``voice``, draw delivery settings from ``rng``, trim, resample.

    ``piper_noise`` > 0 makes piper more natural but not bit-reproducible (its noise is not seedable).
    """
    engine, _, name = voice.partition(":")
    if engine == "hibari":
        wav, sr, detail = _hibari(text, rng, speed_range)
    elif engine == "piper":
        wav, sr, detail = _piper(text, name, rng, speed_range, piper_noise)
    elif engine == "espeak":
        wav, sr, detail = _espeak(text, name, rng, speed_range)
    else:
        raise ValueError(f"unknown voice {voice!r}: use hibari:heart, piper:joe or espeak:<accent>")
    wav = trim_silence(np.asarray(wav, dtype=np.float32), sr)
    return Utterance(resample(wav, sr, sample_rate), sample_rate, voice, detail)


def split_voices(
    voices: list[str], dev_voices: list[str], test_voices: list[str]
) -> dict[str, tuple[list[str], list[str]]]:
    """Per split, ``(seen, unseen)`` voice ids: train uses only voices outside ``dev_voices``/``test_voices``;
    dev adds the dev voices; test adds both dev and held-out test voices."""
    unknown = sorted(set(dev_voices + test_voices) - set(voices))
    if unknown:
        raise ValueError(f"held-out voices {unknown} are not in the voices list {voices}")
    train = [v for v in voices if v not in dev_voices and v not in test_voices]
    if not train:
        raise ValueError("every voice is held out: keep at least one training voice")
    return {"train": (train, []), "dev": (train, list(dev_voices)), "test": (train, list(dev_voices) + list(test_voices))}
