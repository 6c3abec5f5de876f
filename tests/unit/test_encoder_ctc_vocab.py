"""CharVocab for CTC heads: normalisation, encode/decode, greedy CTC decoding; the error counts CER/WER use."""

import torch

from omnikit.data.char_vocab import CharVocab
from omnikit.evaluation.text_metrics import cer, char_errors, wer, word_errors


def test_encode_normalises_and_roundtrips():
    v = CharVocab()
    assert v.size == 39 and len(v) == 39
    ids = v.encode("  Café—it’s 42!! ")
    assert 0 not in ids
    assert v.decode(ids) == "cafe it's 42"
    assert v.encode("a b") == [v.symbols.index("a"), v.symbols.index(" "), v.symbols.index("b")]
    assert v.encode("a\tb#") == v.encode("a b")


def test_greedy_decode_collapses_repeats_and_blanks():
    v = CharVocab()
    h, i = v.encode("h")[0], v.encode("i")[0]
    path = [h, h, 0, i, i, 0, 0, i]
    logits = torch.full((2, len(path), v.size), -5.0)
    for t, k in enumerate(path):
        logits[0, t, k] = 5.0
        logits[1, t, k] = 5.0
    assert v.greedy_decode(logits, torch.tensor([8, 4])) == ["hii", "hi"]


def test_error_counts():
    assert char_errors("kitten", "sitting") == (3, 6)
    assert char_errors("", "abc") == (3, 0)
    assert word_errors("same words", "same word") == (1, 2)
    assert word_errors("Hello, World!", "hello world") == (0, 2)  # normalised first
    assert wer(["a b", "c"], ["a", "c d"]) == 2 / 3 and wer("a b", "a b") == 0.0
    assert cer(["ab"], ["ab"]) == 0.0
