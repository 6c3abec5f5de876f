"""Audio file loading: formats, resampling, mono, and errors that name the file."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from omnikit.audio.io import AudioError, load_audio, write_audio


def test_roundtrip_wav_and_flac(tmp_path: Path):
    wav = 0.5 * torch.sin(torch.arange(8000) / 8000 * 2 * torch.pi * 440)
    for suffix in (".wav", ".flac"):
        path = write_audio(tmp_path / f"a{suffix}", wav)
        back = load_audio(path)
        assert back.dtype == torch.float32 and back.shape == wav.shape
        assert (back - wav).abs().max() < 1e-3  # 16-bit quantisation


def test_stereo_int16_resampled_to_16k_mono(tmp_path: Path):
    sr = 8000
    left = (np.sin(np.arange(sr) / sr * 2 * np.pi * 200) * 16000).astype(np.int16)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, sr, subtype="PCM_16")
    out = load_audio(path)
    assert out.shape == (16000,)
    # mono = mean of channels: peak about 0.5 * 16000/32768
    assert abs(float(out.abs().max()) - 0.5 * 16000 / 32768) < 0.02


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b"this is not audio at all" * 10), "cannot read"),
        (lambda p: sf.write(p, np.zeros((0,), dtype=np.float32), 16000), "no audio"),
        (lambda p: sf.write(p, np.array([0.1, np.nan] * 400, dtype=np.float32), 16000, subtype="FLOAT"), "NaN"),
        (lambda p: sf.write(p, np.zeros(100, dtype=np.float32), 16000), "shorter than one 25 ms frame"),
    ],
    ids=["corrupt", "empty", "nan", "too_short"],
)
def test_bad_audio_raises_naming_the_file(tmp_path: Path, make, message):
    path = tmp_path / "bad_input.wav"
    make(path)
    with pytest.raises(AudioError) as err:
        load_audio(path)
    assert "bad_input.wav" in str(err.value)
    assert message in str(err.value)
    assert isinstance(err.value, ValueError)


def test_missing_file(tmp_path: Path):
    with pytest.raises(AudioError, match="nope.wav"):
        load_audio(tmp_path / "nope.wav")
