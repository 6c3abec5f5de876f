"""CharVocab for CTC heads: normalisation, encode/decode, greedy CTC decoding, edit distance."""

import torch

from omnikit.data.char_vocab import CharVocab, edit_distance


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


def test_edit_distance():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3
    assert edit_distance("same words".split(), "same word".split()) == 1
