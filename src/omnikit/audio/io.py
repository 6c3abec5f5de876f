"""Audio file I/O for the speech input path: read any soundfile format as 16 kHz mono float32.

Errors are for people: every problem raises :class:`AudioError` naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from omnikit.interfaces import SAMPLE_RATE

FRAME_SECONDS = 0.025
"""One Kaldi analysis window (25 ms): the shortest audio that yields a feature frame."""


class AudioError(ValueError):
    """An audio file that cannot be used; the message names the file and the problem."""


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Read ``path`` as a mono float32 tensor ``(samples,)`` in [-1, 1] at ``sample_rate``.

    Integer PCM is scaled by soundfile to [-1, 1); stereo is averaged to mono; other rates are resampled with
    ``torchaudio.functional.resample``. Raises :class:`AudioError` for unreadable or empty files, NaN/inf
    samples and audio shorter than one 25 ms frame.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file")
    try:
        data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        raise AudioError(f"{path}: cannot read audio ({err})") from err
    if data.size == 0:
        raise AudioError(f"{path}: the file holds no audio samples")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: audio contains NaN or infinite samples")
    mono = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
    if file_sr != sample_rate:
        mono = AF.resample(mono, orig_freq=int(file_sr), new_freq=sample_rate)
    min_samples = int(round(FRAME_SECONDS * sample_rate))
    if mono.numel() < min_samples:
        ms = 1000.0 * mono.numel() / sample_rate
        raise AudioError(f"{path}: audio is {ms:.1f} ms long, shorter than one 25 ms frame")
    return mono.to(torch.float32)


def write_audio(path: str | Path, wav: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write a mono ``(samples,)`` (or ``(1, samples)``) float tensor in [-1, 1] as 16-bit PCM (format from the
    suffix: .wav, .flac, .ogg)."""
    path = Path(path)
    arr = wav.detach().to("cpu", torch.float32).reshape(-1).numpy()
    if not np.isfinite(arr).all():
        raise AudioError(f"{path}: refusing to write NaN or infinite samples")
    path.parent.mkdir(parents=True, exist_ok=True)
    subtype = "VORBIS" if path.suffix.lower() == ".ogg" else "PCM_16"
    sf.write(str(path), np.clip(arr, -1.0, 1.0), sample_rate, subtype=subtype)
    return path
