"""Helpers the codec benchmark shares with other components: WER scoring, hibari synthesis, the ASR judge."""

import pytest

from omnikit.evaluation.asr_judge import normalize, wer, word_errors


def test_normalize_strips_case_and_punctuation():
    assert normalize("Hello, World! It's  the well-known 'end'.") == "hello world it's the well known end"


def test_wer_counts_substitutions_insertions_deletions():
    assert word_errors("the cat sat", "the cat sat") == (0, 3)
    assert word_errors("the cat sat", "a cat sat down") == (2, 3)  # one substitution, one insertion
    assert word_errors("the cat sat", "cat") == (2, 3)
    assert wer("the cat sat", "the bat sat") == pytest.approx(1 / 3)


def test_corpus_wer_pools_errors_over_sentences():
    assert wer(["a b c d", "e f"], ["a b c d", "x y"]) == pytest.approx(2 / 6)
    with pytest.raises(ValueError):
        wer(["a"], ["a", "b"])


def test_hibari_speech_is_recognised_by_the_judge():
    pytest.importorskip("hibari")
    pytest.importorskip("pocketsphinx")
    import torch
    import torchaudio

    from omnikit.data.tts.hibari import synthesize
    from omnikit.evaluation.asr_judge import transcribe

    wav, sr = synthesize("Someone stole my wallet on the train.")
    assert sr == 24_000 and wav.dtype.name == "float32" and 0.5 < len(wav) / sr < 6
    hyp = transcribe(torchaudio.functional.resample(torch.from_numpy(wav), sr, 16_000))
    assert wer("Someone stole my wallet on the train.", hyp) <= 0.5
