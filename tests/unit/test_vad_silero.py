"""silero VAD: speech vs silence/noise, state equal to the package's stateful model, offline load."""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from omnikit.components.vads.silero import SileroVAD, SileroVADConfig, packaged_model_path
from omnikit.components.vads.vad_tracker import SpeechEventKind, SpeechTracker, SpeechTrackerConfig

pytest.importorskip("silero_vad", reason="the silero-vad package (which ships the weights) is not installed")


@pytest.fixture(scope="module")
def vad() -> SileroVAD:
    return SileroVAD(SileroVADConfig())


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> torch.Tensor:
    """About 3 s of synthetic English speech at 16 kHz (espeak-ng), or skip."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("espeak-ng is not installed (apt-get install -y espeak-ng): no speech audio to test on")
    from omnikit.audio.io import load_audio

    path = Path(tmp_path_factory.mktemp("vad")) / "speech.wav"
    text = "Hello there, this is a test of the voice activity detector."
    subprocess.run([espeak, "-w", str(path), text], check=True, capture_output=True, timeout=60)
    return load_audio(path)


def window_probs(vad: SileroVAD, wav: torch.Tensor) -> torch.Tensor:
    state, out = vad.init_state(), []
    for i in range(0, wav.numel() - vad.window + 1, vad.window):
        p, state = vad.speech_prob(wav[i : i + vad.window], state)
        out.append(p)
    return torch.tensor(out)


def test_high_on_speech_low_on_silence_and_noise(vad, speech):
    p_speech = window_probs(vad, speech)
    assert p_speech.max() > 0.95
    assert (p_speech > 0.8).float().mean() > 0.5  # most of an espeak sentence is voiced
    p_silence = window_probs(vad, torch.zeros(16000))
    noise = 0.1 * torch.randn(16000, generator=torch.Generator().manual_seed(0))
    p_noise = window_probs(vad, noise)
    assert p_silence.max() < 0.2
    assert p_noise.max() < 0.2


def test_caller_state_matches_the_package_stateful_model_exactly(vad, speech):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.load(str(packaged_model_path()), map_location="cpu").eval()
    wav = speech[: 40 * 512]
    with torch.inference_mode():
        ref = [float(scripted(wav[i : i + 512].unsqueeze(0), 16000)) for i in range(0, wav.numel(), 512)]
    assert window_probs(vad, wav).tolist() == ref


def test_interleaved_streams_do_not_share_state(vad, speech):
    a, b = speech[: 20 * 512], torch.flip(speech[: 20 * 512], dims=[0])
    sa, sb, pa, pb = vad.init_state(), vad.init_state(), [], []
    for i in range(0, a.numel(), 512):
        p, sa = vad.speech_prob(a[i : i + 512], sa)
        pa.append(p)
        p, sb = vad.speech_prob(b[i : i + 512], sb)
        pb.append(p)
    assert pa == window_probs(vad, a).tolist()
    assert pb == window_probs(vad, b).tolist()
    assert pa != pb


def test_long_window_reports_max_of_native_windows(vad, speech):
    long = SileroVAD(SileroVADConfig(window=2560))
    chunk = speech[16000 : 16000 + 2560]
    p, _ = long.speech_prob(chunk, long.init_state())
    assert p == pytest.approx(float(window_probs(vad, chunk).max()), abs=1e-6)


def test_bad_config_and_window_size_raise(vad):
    with pytest.raises(ValueError, match="multiple of 512"):
        SileroVAD(SileroVADConfig(window=500))
    with pytest.raises(ValueError, match="16000 or 8000"):
        SileroVAD(SileroVADConfig(sample_rate=22050))
    with pytest.raises(ValueError, match="expected 512 samples"):
        vad.speech_prob(torch.zeros(511), vad.init_state())


def test_loads_from_package_files_without_importing_the_package():
    """Importing silero_vad sets torch threads to 1 process-wide; the component must not do that."""
    code = (
        "import sys, torch; torch.set_num_threads(2)\n"
        "from omnikit.components.vads.silero import SileroVAD, SileroVADConfig\n"
        "v = SileroVAD(SileroVADConfig(sample_rate=8000, window=256))\n"
        "p, _ = v.speech_prob(torch.zeros(256), v.init_state())\n"
        "assert 'silero_vad' not in sys.modules, 'package imported'\n"
        "assert torch.get_num_threads() == 2\n"
        "print(round(p, 3))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) < 0.2


def test_tracker_on_real_speech_starts_near_onset_and_ends_after_silence(vad, speech):
    wav = torch.cat([torch.zeros(8 * 2560), speech, torch.zeros(12 * 2560)])
    tracker = SpeechTracker(vad, SpeechTrackerConfig(min_silence_ms=1000))
    state, kinds, starts = tracker.init_state(), [], []
    for i in range(0, wav.numel() - 2559, 2560):
        events, state = tracker.push(wav[i : i + 2560], state)
        for e in events:
            kinds.append((i // 2560, e.kind))
            if e.kind is SpeechEventKind.START:
                starts.append(e)
    transitions = [(c, k) for c, k in kinds if k in (SpeechEventKind.START, SpeechEventKind.END)]
    assert [k for _, k in transitions] == [SpeechEventKind.START, SpeechEventKind.END]
    start_chunk, end_chunk = transitions[0][0], transitions[1][0]
    assert 8 <= start_chunk <= 10  # speech begins at chunk 8
    last_loud = int(torch.nonzero(speech.abs() > 0.02).max())  # espeak pads its output with silence
    speech_end_chunk = 8 + last_loud / 2560
    assert speech_end_chunk + 1000 / 160 - 1 <= end_chunk <= speech_end_chunk + 1000 / 160 + 3
    assert len(starts[0].chunks) == 7  # 6 pre-roll chunks + the current one
