"""Duplex state labels of the speech world: one label per 160 ms chunk, at the right places."""

import numpy as np
import pytest

from omnikit.data.world.duplex import (
    CHUNK_S,
    IGNORE,
    LISTEN,
    RESPOND,
    Event,
    chunk_labels,
    lay_out,
    num_chunks,
    split_question,
)


def test_question_with_mid_pause_listens_until_the_end_then_responds():
    events = [Event("question_part", 0.5, 1.3, "What is", False), Event("question_part", 2.0, 2.9, "it?", True)]
    labels = chunk_labels(3.2, events, respond_chunks=2)
    assert len(labels) == num_chunks(3.2) == 20
    first_after = int(np.ceil(2.9 / CHUNK_S))  # chunk 19 starts at 3.04 >= 2.9
    assert labels[:first_after] == [LISTEN] * first_after  # includes the 0.7 s pause at 1.3-2.0
    assert labels[first_after:] == [RESPOND] * (20 - first_after)


def test_statement_then_question_ignores_after_statement_and_responds_after_question():
    events = [
        Event("statement", 0.2, 1.0, "Pass the salt.", False),
        Event("question_part", 2.0, 3.0, "What time is it?", True),
    ]
    labels = chunk_labels(3.52, events, respond_chunks=2)
    assert len(labels) == 22
    assert labels[7] == IGNORE and labels[8] == IGNORE  # chunks starting at 1.12 and 1.28 (>= 1.0)
    assert labels[9] == LISTEN  # only respond_chunks chunks after the statement
    assert labels[6] == LISTEN  # chunk 0.96-1.12 still holds speech
    assert labels[19:21] == [RESPOND, RESPOND] and labels[18] == LISTEN


def test_noise_burst_chunks_are_ignore():
    labels = chunk_labels(2.0, [Event("noise", 0.5, 0.9)], respond_chunks=2)
    assert [i for i, v in enumerate(labels) if v == IGNORE] == [3, 4, 5]


@pytest.mark.parametrize("respond_chunks", [1, 3])
def test_lay_out_ends_respond_chunks_after_last_event(respond_chunks):
    sr = 16000
    rng = np.random.default_rng(0)
    pieces = [("question_part", np.ones(int(0.75 * sr), np.float32), "Hi there?", True)]
    wav, events = lay_out(pieces, sr, rng, [], lead=0.3, respond_chunks=respond_chunks)
    assert events[0].start == pytest.approx(0.3) and events[0].end == pytest.approx(1.05)
    n = len(wav) / sr / CHUNK_S
    assert n == pytest.approx(round(n)) and round(n) == int(np.ceil(1.05 / CHUNK_S)) + respond_chunks
    labels = chunk_labels(len(wav) / sr, events, respond_chunks)
    assert labels.count(RESPOND) == respond_chunks and labels[-1] == RESPOND


def test_split_question_keeps_every_word():
    rng = np.random.default_rng(1)
    for text in ["I was wondering, what is the capital of Peru?", "Which element has atomic number six?"]:
        a, b = split_question(text, rng)
        assert a and b and f"{a} {b}" == text
