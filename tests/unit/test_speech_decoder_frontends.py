"""Symbol front ends of nar_duration: characters and hibari phonemes, weights and the duration prior."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from omnikit.components.speech_decoders.frontends import (
    CHAR_VOCAB,
    batch_symbols,
    prior_durations,
    text_symbols,
    vocab_size,
)


def test_chars_are_lower_cased_and_spaces_get_no_frames():
    ids, w = text_symbols("Hi, Bo.", "chars")
    assert ids.tolist() == [CHAR_VOCAB[c] for c in "hi, bo."]
    assert w.tolist() == [1, 1, 1, 0, 1, 1, 1]  # letters and pause marks count, the space does not
    assert text_symbols("a\u00e9", "chars")[0].tolist() == [CHAR_VOCAB["a"], 1]  # unknown character -> 1
    assert int(ids.max()) < vocab_size("chars")


def test_empty_text_still_gives_one_symbol():
    ids, w = text_symbols("", "chars")
    assert ids.tolist() == [1] and w.tolist() == [1.0]
    ids, w = text_symbols("  ", "chars")
    assert w.tolist() == [1.0, 1.0]  # nothing to weigh: equal shares


def test_batch_is_padded_with_zero():
    ids, w, lens = batch_symbols(["ab", "abcd"], "chars")
    assert ids.shape == (2, 4) and lens.tolist() == [2, 4] and ids[0, 2:].tolist() == [0, 0]
    assert w[0, 2:].tolist() == [0, 0]


def test_prior_durations_are_exact_proportional_and_skip_weightless_symbols():
    w = torch.tensor([[1.0, 0.0, 1.0, 2.0, 0.0], [1.0, 1.0, 1.0, 0.0, 0.0]])
    lens, frames = torch.tensor([4, 3]), torch.tensor([12, 2])
    d = prior_durations(w, lens, frames)
    assert d.sum(1).tolist() == [12, 2]
    assert d[0].tolist() == [3, 0, 3, 6, 0]
    assert d[1, 3:].tolist() == [0, 0] and d[1].max() == 1  # fewer frames than symbols: some get none


@pytest.mark.skipif(importlib.util.find_spec("hibari") is None, reason="hibari-tts not installed")
def test_phonemes_come_from_hibaris_g2p():
    from omnikit.components.speech_decoders.frontends import phonemes

    ps = phonemes("Hello there.")
    assert ps.endswith(".") and "ð" in ps
    ids, w = text_symbols("Hello there.", "phonemes")
    assert len(ids) == len(ps) and int(ids.max()) < vocab_size("phonemes") and int(ids.min()) >= 2
    assert w[[i for i, c in enumerate(ps) if c in " ˈˌ"]].sum() == 0 and w.sum() > 5


def test_fitted_prior_learns_which_symbols_last_longer():
    from omnikit.components.speech_decoders.frontends import FittedPrior

    prior = FittedPrior("chars", strength=0.01)  # nearly least squares
    a, b, dot = CHAR_VOCAB["a"], CHAR_VOCAB["b"], CHAR_VOCAB["."]
    g = torch.Generator().manual_seed(0)
    for _ in range(20):  # 'a' lasts 4 frames, 'b' 1, '.' 6; spaces nothing
        na, nb = torch.randint(1, 6, (2,), generator=g).tolist()
        ids = torch.tensor([[a] * na + [CHAR_VOCAB[" "]] + [b] * nb + [dot]])
        prior.update(ids, torch.tensor([ids.shape[1]]), torch.tensor([4 * na + nb + 6]))
    w = prior.weights()
    assert w[a] == pytest.approx(4.0, rel=0.05) and w[b] == pytest.approx(1.0, rel=0.1)
    assert w[dot] == pytest.approx(6.0, rel=0.1) and w[CHAR_VOCAB[" "]] == 0 and w[0] == 0
    # no data yet: the flat prior (every weighted symbol equal)
    fresh = FittedPrior("chars").weights()
    assert fresh[a] == fresh[b] == fresh[dot] and fresh[CHAR_VOCAB[" "]] == 0


@pytest.mark.skipif(importlib.util.find_spec("hibari") is None, reason="hibari-tts not installed")
def test_long_numbers_are_read_digit_by_digit_as_the_voice_does():
    from omnikit.components.speech_decoders.frontends import phonemes

    # hibari's number reader stops at the trillions (IndexError on 13+ digits); the world renders such runs
    # digit by digit (omnikit.data.tts.hibari.LONG_NUMBER), and so does the front end
    assert phonemes("It has 12345678901234 atoms.") == phonemes("It has 1 2 3 4 5 6 7 8 9 0 1 2 3 4 atoms.")
