"""Kaldi-compatible 80-bin log-mel fbank (25 ms window, 10 ms shift, dither 0), the speech input features.

Samples in [-1, 1] are scaled to the int16 range before analysis, as the Freeze-Omni front-end does. Every
fbank frame depends only on its own 400 samples (Kaldi ``snip_edges``), which is what makes the streaming
front-end exactly equal to the offline one.
"""

from __future__ import annotations

import torch
import torchaudio.compliance.kaldi as kaldi
from torch import Tensor

from omnikit.interfaces import CHUNK_FRAMES, FEATURE_DIM, SAMPLE_RATE

FRAME_LENGTH = 400
"""Samples per analysis window (25 ms at 16 kHz)."""
FRAME_SHIFT = 160
"""Samples per frame shift (10 ms at 16 kHz)."""
CONTEXT_SAMPLES = FRAME_LENGTH - FRAME_SHIFT
"""Zero samples before the first sample (240): frame ``k`` then covers audio samples ``[160k-240, 160k+160)``,
so ``n`` samples give exactly ``n / 160`` frames when ``n`` is a multiple of 160."""
INT16_SCALE = 32768.0


def fbank(wav: Tensor, num_mel_bins: int = FEATURE_DIM, sample_rate: int = SAMPLE_RATE) -> Tensor:
    """Plain Kaldi fbank of ``(samples,)`` float audio in [-1, 1] -> ``(frames, num_mel_bins)`` float32.

    Returns zero frames for audio shorter than one window.
    """
    wav = wav.reshape(-1).to(torch.float32)
    if wav.numel() < FRAME_LENGTH:
        return wav.new_zeros(0, num_mel_bins)
    return kaldi.fbank(
        (wav * INT16_SCALE).unsqueeze(0),
        num_mel_bins=num_mel_bins,
        frame_length=1000.0 * FRAME_LENGTH / sample_rate,
        frame_shift=1000.0 * FRAME_SHIFT / sample_rate,
        dither=0.0,
        sample_frequency=float(sample_rate),
    )


def padded_samples(num_samples: int, chunk_frames: int = CHUNK_FRAMES) -> int:
    """Samples after zero-padding up to a whole number of chunks (``chunk_frames * 160`` samples each)."""
    chunk = chunk_frames * FRAME_SHIFT
    return -(-num_samples // chunk) * chunk


def utterance_features(wav: Tensor, chunk_frames: int = CHUNK_FRAMES, num_mel_bins: int = FEATURE_DIM) -> Tensor:
    """Offline twin of :class:`~omnikit.audio.frontend.StreamingFrontend`: features of a whole utterance.

    The rule: prepend 240 zero samples, zero-pad the end up to a multiple of ``chunk_frames * 160`` samples
    (2560 = 160 ms by default, as Freeze-Omni's offline script pads), then fbank. ``n`` chunks of audio give
    exactly ``n * chunk_frames`` frames, equal to the streaming front-end's concatenated output.
    """
    wav = wav.reshape(-1).to(torch.float32)
    if wav.numel() == 0:
        return wav.new_zeros(0, num_mel_bins)
    total = padded_samples(wav.numel(), chunk_frames)
    padded = torch.cat([wav.new_zeros(CONTEXT_SAMPLES), wav, wav.new_zeros(total - wav.numel())])
    return fbank(padded, num_mel_bins)
