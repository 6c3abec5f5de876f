"""Small numpy augmentations for synthetic speech: gain, coloured noise at an SNR, synthetic reverberation.

The reverberation uses an exponentially decaying noise impulse response with a chosen RT60 (a cheap stand-in
for measured room responses); the output keeps the input length, so labels in time stay valid.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import fftconvolve


def coloured_noise(n: int, rng: np.random.Generator, colour: str = "white") -> np.ndarray:
    """Unit-RMS white, pink (1/f) or brown (1/f^2) noise."""
    white = rng.standard_normal(n)
    if colour != "white" and n > 1:
        spec = np.fft.rfft(white)
        f = np.arange(len(spec), dtype=np.float64)
        f[0] = 1.0
        spec /= np.sqrt(f) if colour == "pink" else f
        white = np.fft.irfft(spec, n)
    return (white / (np.sqrt(np.mean(white**2)) + 1e-12)).astype(np.float32)


def add_noise(wav: np.ndarray, rng: np.random.Generator, snr_db: float, colour: str = "white") -> np.ndarray:
    """Add noise so that speech power / noise power equals ``snr_db``."""
    power = float(np.mean(wav**2)) + 1e-10
    noise = coloured_noise(len(wav), rng, colour) * np.sqrt(power / 10 ** (snr_db / 10))
    return (wav + noise).astype(np.float32)


def synthetic_rir(sr: int, rng: np.random.Generator, rt60: float) -> np.ndarray:
    """A room impulse response: direct path, then noise decaying 60 dB over ``rt60`` seconds."""
    n = max(2, int(rt60 * sr))
    t = np.arange(n) / sr
    rir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60) * 0.3
    rir[: int(0.002 * sr)] = 0.0
    rir[0] = 1.0
    return (rir / np.sqrt(np.sum(rir**2))).astype(np.float32)


def reverberate(wav: np.ndarray, sr: int, rng: np.random.Generator, rt60: float) -> np.ndarray:
    """Convolve with a synthetic RIR, keep the input length and peak level."""
    out = fftconvolve(wav, synthetic_rir(sr, rng, rt60))[: len(wav)]
    peak_in, peak_out = np.abs(wav).max() + 1e-9, np.abs(out).max() + 1e-9
    return (out * (peak_in / peak_out)).astype(np.float32)


def augment(
    wav: np.ndarray,
    sr: int,
    rng: np.random.Generator,
    *,
    noise_prob: float,
    snr_db: tuple[float, float],
    reverb_prob: float,
    rt60: tuple[float, float],
    gain_db: tuple[float, float],
) -> tuple[np.ndarray, str]:
    """Apply each augmentation with its probability; returns the audio (peak <= 0.99) and a description."""
    done = []
    if rng.random() < reverb_prob:
        t60 = float(rng.uniform(*rt60))
        wav = reverberate(wav, sr, rng, t60)
        done.append(f"rt60={t60:.2f}")
    if rng.random() < noise_prob:
        snr = float(rng.uniform(*snr_db))
        colour = str(rng.choice(["white", "pink", "brown"]))
        wav = add_noise(wav, rng, snr, colour)
        done.append(f"{colour}_snr={snr:.1f}")
    gain = float(rng.uniform(*gain_db))
    wav = wav * 10 ** (gain / 20)
    done.append(f"gain={gain:.1f}")
    peak = np.abs(wav).max()
    if peak > 0.99:
        wav = wav * (0.99 / peak)
    return wav.astype(np.float32), " ".join(done)
