"""The cascade baseline decoder: TTS voice -> codec tokens, chunked like a learned decoder, no weights."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from omnikit.components.codecs.mel_vq import MelVQCodec, MelVQConfig
from omnikit.components.speech_decoders.cascade_tts import CascadeTTSConfig, CascadeTTSSpeechDecoder
from omnikit.interfaces import SpeechDecoder

COND = 24


@pytest.fixture(scope="module")
def codec():
    return MelVQCodec(MelVQConfig(codebook_size=32, n_mels=20, griffin_lim_iters=2)).eval()


def decoder(codebook_size: int = 32, **cfg) -> CascadeTTSSpeechDecoder:
    return CascadeTTSSpeechDecoder(CascadeTTSConfig(**cfg), cond_dim=COND, codebook_size=codebook_size)


def fake_voice(monkeypatch, seconds: float = 1.0):
    """A deterministic 'voice': a tone whose length and pitch depend on the text (no TTS engine needed)."""
    from omnikit.data.world import voices

    calls = []

    def speak(voice, text, rng, sample_rate=16000, speed_range=(1.0, 1.0), **_):
        calls.append((voice, text, sample_rate, speed_range))
        n = int(seconds * sample_rate * len(text) / 10)
        t = np.arange(n) / sample_rate
        wav = (0.3 * np.sin(2 * np.pi * (100 + 20 * len(text)) * t)).astype(np.float32)
        return voices.Utterance(wav, sample_rate, voice, "fake")

    monkeypatch.setattr(voices, "speak", speak)
    return calls


def test_contract_and_no_trainable_weights():
    model = decoder()
    assert isinstance(model, SpeechDecoder)
    assert not list(model.parameters()) and not model.state_dict()
    tokens = torch.randint(0, 32, (2, 7))
    out = model(torch.randn(2, 3, COND), torch.tensor([3, 2]), None, None, tokens, torch.tensor([7, 5]))
    assert out["loss"].item() == 0.0 and not out["loss"].requires_grad


def test_generate_chunks_the_codec_tokens_of_the_voice(monkeypatch, codec):
    calls = fake_voice(monkeypatch, seconds=1.0)
    model = decoder(voice="hibari:heart", speed=1.0)
    timings: dict[str, float] = {}
    text = "Tokyo is the capital."  # 21 characters -> 2.1 s -> 84 tokens at 40 tokens/s
    chunks = list(model.generate(torch.randn(1, 5, COND), torch.randn(1, 5, COND), text=text, codec=codec,
                                 first_chunk=10, chunk=30, timings=timings, top_k=2))
    assert [c.numel() for c in chunks] == [10, 30, 30, 14]
    assert all(c.dtype == torch.long for c in chunks)
    from omnikit.data.world import voices

    wav = voices.speak("hibari:heart", text, None, sample_rate=16000).wav
    expected = codec.encode(torch.from_numpy(wav)[None])[0]
    assert torch.equal(torch.cat(chunks), expected)
    assert calls[0] == ("hibari:heart", text, 16000, (1.0, 1.0))
    assert {"prefill_s", "first_chunk_s", "total_s"} <= timings.keys() and timings["tokens"] == 84


def test_max_tokens_bound_codec_binding_and_errors(monkeypatch, codec):
    fake_voice(monkeypatch)
    model = decoder()
    with pytest.raises(ValueError, match="text="):
        list(model.generate(torch.randn(1, 2, COND), None, codec=codec))
    with pytest.raises(ValueError, match="codec="):
        list(model.generate(torch.randn(1, 2, COND), None, text="hello"))
    with pytest.raises(ValueError, match="32 codes"):
        decoder(codebook_size=16).bind_codec(codec)
    model.bind_codec(codec)
    assert "codec" not in dict(model.named_children())  # the codec's weights are not the decoder's
    assert sum(c.numel() for c in model.generate(None, None, text="a long enough text", max_tokens=25)) == 25
    assert list(model.generate(None, None, text="   ")) == []


@pytest.mark.skipif(importlib.util.find_spec("hibari") is None, reason="pip install hibari-tts")
def test_real_assistant_voice_fills_the_segment(codec):
    model = decoder()
    text = "The capital of Japan is Tokyo."
    tokens = torch.cat(list(model.generate(None, None, text=text, codec=codec, first_chunk=20, chunk=40)))
    seconds = tokens.numel() / codec.frame_rate
    assert 1.0 < seconds < 4.0, seconds  # about 2 s of speech
    again = torch.cat(list(model.generate(None, None, text=text, codec=codec)))
    assert torch.equal(tokens, again)  # seeded voice: reproducible
