"""Streaming text segmentation rules and segment-text cleanup (spec §4.1)."""

from __future__ import annotations

import torch

from omnikit.inference.segmenter import Segment, SegmenterConfig, TextSegmenter, clean_segment_text


def feed(seg: TextSegmenter, deltas: list[str], start_id: int = 0) -> list[Segment]:
    out = []
    for i, d in enumerate(deltas):
        s = seg.push(d, start_id + i, torch.full((1, 1, 3), float(start_id + i)))
        if s is not None:
            out.append(s)
    return out


def test_first_segment_closes_at_comma_later_ones_only_at_sentence_end():
    seg = TextSegmenter(SegmenterConfig())
    deltas = ["Well", " I", " think", " so", ",", " but", " you", " know", ",", " maybe", " not", "."]
    out = feed(seg, deltas)
    assert [s.text for s in out] == ["Well I think so,", " but you know, maybe not."]
    assert [s.index for s in out] == [0, 1]
    assert out[0].token_ids == [0, 1, 2, 3, 4]
    assert out[0].hidden.shape == (5, 3) and out[0].hidden[:, 0].tolist() == [0, 1, 2, 3, 4]
    assert seg.flush() is None


def test_min_tokens_blocks_early_split():
    seg = TextSegmenter(SegmenterConfig(min_tokens=4))
    out = feed(seg, ["Hi", ".", " How", " are", " you", "?"])
    assert [s.text for s in out] == ["Hi. How are you?"]


def test_long_segment_may_close_at_comma():
    seg = TextSegmenter(SegmenterConfig(long_tokens=6, max_tokens=0))
    feed(seg, ["A", " b", " c", " d", "."])  # first segment
    out = feed(
        seg, [" one", ",", " two", " three", ",", " four", " five", ",", " six", " seven", ",", " eight", "."]
    )
    assert [s.text for s in out] == [" one, two three, four five,", " six seven, eight."]
    assert len(out[0]) == 8


def test_max_tokens_forces_a_split():
    seg = TextSegmenter(SegmenterConfig(max_tokens=5, first_segment_comma=False))
    out = feed(seg, [f" w{i}" for i in range(12)])
    assert [len(s) for s in out] == [5, 5]
    rest = seg.flush()
    assert rest is not None and len(rest) == 2 and rest.final


def test_digit_dot_does_not_split():
    seg = TextSegmenter(SegmenterConfig(first_segment_comma=False))
    out = feed(seg, ["Steps", " are", ":", "\n", "1", ".", " Mix", " it", " well", "."])
    # "\n" closes the heading line; "1." does not close; the sentence end does.
    assert [s.text for s in out] == ["Steps are:\n", "1. Mix it well."]
    seg2 = TextSegmenter(SegmenterConfig(first_segment_comma=False, digit_dot_exception=False))
    out2 = feed(seg2, ["Pi", " is", " about", " 3", ".", "14", "."])
    assert [s.text for s in out2] == ["Pi is about 3."]


def test_flush_returns_rest_and_resets_answer():
    seg = TextSegmenter(SegmenterConfig())
    feed(seg, ["One", " two", " three", " four", "."])
    feed(seg, [" And", " then"])
    rest = seg.flush()
    assert rest is not None and rest.text == " And then" and rest.final and rest.index == 1
    assert seg.pending_tokens == 0
    # new answer: the first-segment comma rule applies again
    out = feed(seg, ["Yes", " it", " is", " true", ","])
    assert len(out) == 1 and out[0].index == 0
    assert seg.flush() is None


def test_segment_without_hidden_states():
    seg = TextSegmenter(SegmenterConfig())
    for i, d in enumerate(["a", " b", " c", " d", "."]):
        last = seg.push(d, i)
    assert last is not None and last.hidden is None


def test_clean_segment_text():
    assert clean_segment_text("**Bold** `code` ~x~ text_here") == "Bold code x texthere."
    assert clean_segment_text("1. First item") == "1:First item."
    assert clean_segment_text("1. 第一步") == "1：第一步。"
    assert clean_segment_text("Steps:\n1. Mix\n2. Bake") == "Steps: 1:Mix 2:Bake."
    assert clean_segment_text("Pi is 3.14") == "Pi is 3.14."
    assert clean_segment_text("你好、世界（测试）") == "你好，世界，测试。"
    assert clean_segment_text("It works (mostly).") == "It works, mostly."
    assert clean_segment_text("Well,") == "Well."
    assert clean_segment_text("好的：") == "好的。"
    assert clean_segment_text("Really?") == "Really?"
    assert clean_segment_text("## Title\nBody!") == "Title Body!"
    assert clean_segment_text("  \n ") == ""


def test_first_segment_cut_after_a_few_words_at_a_word_boundary():
    seg = TextSegmenter(SegmenterConfig(first_max_tokens=4))
    deltas = ["The", " cap", "ital", " of", " France", " is", " Paris", ".", " It", " is", " big", "."]
    out = feed(seg, deltas)
    # four tokens reached inside "capital of": the cut waits for the next word (" France") and leaves it out
    assert [s.text for s in out] == ["The capital of", " France is Paris.", " It is big."]
    assert out[0].token_ids == [0, 1, 2, 3] and out[1].token_ids[0] == 4
    assert out[1].hidden[:, 0].tolist()[0] == 4.0
    # only the first segment is cut without punctuation
    seg = TextSegmenter(SegmenterConfig(first_max_tokens=2, min_tokens=1))
    out = feed(seg, ["A", ".", " b", " c", " d", " e", "."])
    assert [s.text for s in out] == ["A.", " b c d e."]
