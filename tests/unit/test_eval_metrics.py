"""Evaluation metric functions on tiny hand-made examples: CER/WER, QA matching, percentiles, duplex counts."""

from __future__ import annotations

import pytest

from omnikit.evaluation.duplex_metrics import (
    IGNORE,
    LISTEN,
    RESPOND,
    UNLABELLED,
    StateCounts,
    StreamOutcome,
    add_stream,
    decision_scores,
    false_respond_rate,
    speech_end_time,
    state_accuracy,
    state_scores,
)
from omnikit.evaluation.latency import latency_breakdown, percentile, summarize
from omnikit.evaluation.qa import QARecord, answers_agree, contains_reference, qa_scores
from omnikit.evaluation.text_metrics import cer, error_rates, wer


# ---------------------------------------------------------------- CER / WER
def test_cer_counts_character_edits_over_reference_length():
    assert cer(["abcd"], ["abcd"]) == 0.0
    assert cer(["abcd"], ["abxd"]) == pytest.approx(1 / 4, abs=1e-4)
    assert cer(["abcd"], ["ab"]) == pytest.approx(2 / 4, abs=1e-4)
    # corpus level: total errors / total characters, not the mean of per-utterance rates
    assert cer(["ab", "abcdefgh"], ["xb", "abcdefgh"]) == pytest.approx(1 / 10, abs=1e-4)


def test_error_rates_ignore_case_and_punctuation_and_group():
    out = error_rates(["Hello, World!", "the cat"], ["hello world", "the hat"], groups=["a", "b"])
    assert out["wer"] == pytest.approx(1 / 4, abs=1e-4)
    assert out["by_group"]["a"]["wer"] == 0.0 and out["by_group"]["b"]["wer"] == 0.5
    assert out["by_group"]["b"]["cer"] == pytest.approx(1 / 7, abs=1e-4)
    assert wer(["one two three"], [""]) == 1.0


def test_error_rates_reject_mismatched_lengths():
    with pytest.raises(ValueError):
        cer(["a", "b"], ["a"])


# ---------------------------------------------------------------- spoken QA
def test_contains_reference_whole_words_and_lists():
    assert contains_reference("The capital of France is Paris.", "Paris")
    assert not contains_reference("Parisian food is great", "Paris")
    assert contains_reference("It borders Spain, France and Andorra", "France, Spain and Andorra")
    assert not contains_reference("It borders Spain and France", "France, Spain and Andorra")
    assert contains_reference("Its atomic number is twenty-six.", "26")
    assert contains_reference("Its atomic number is 26.", "26")
    assert not contains_reference("", "Paris")


def test_answers_agree_after_normalisation_only():
    assert answers_agree("Paris is the capital.", "paris is the capital")
    assert not answers_agree("Paris is the capital", "Paris is a capital")
    assert not answers_agree("", "")


def test_qa_scores_accuracy_ratio_and_agreement():
    recs = [
        QARecord("q1", "Paris", "It is Paris.", "It is Paris."),
        QARecord("q2", "Rome", "Rome.", "I do not know."),
        QARecord("q3", None, "An open answer.", "An open answer."),  # open question: agreement only
        QARecord("q4", "Oslo", "Bergen.", ""),
    ]
    s = qa_scores(recs)
    assert s["n"] == 4 and s["n_fact"] == 3
    assert s["written_accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    assert s["spoken_accuracy"] == pytest.approx(1 / 3, abs=1e-4)
    assert s["spoken_to_written"] == pytest.approx(0.5, abs=1e-4)
    assert s["agreement"] == pytest.approx(2 / 4, abs=1e-4)
    assert s["answered"] == pytest.approx(3 / 4, abs=1e-4)


# ---------------------------------------------------------------- latency
def test_percentile_interpolates_like_numpy():
    xs = [10.0, 20.0, 30.0, 40.0, 50.0]
    assert percentile(xs, 50) == 30.0
    assert percentile(xs, 90) == pytest.approx(46.0, abs=1e-4)
    assert percentile([7.0], 90) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_latency_breakdown_skips_missing_values():
    timings = [{"decision_to_first_pcm_ms": 100.0, "speech_end_to_decision_ms": None},
               {"decision_to_first_pcm_ms": 300.0, "speech_end_to_decision_ms": 160.0}]
    out = latency_breakdown(timings)
    assert out["decision_to_first_pcm_ms"]["median"] == 200.0
    assert out["decision_to_first_pcm_ms"]["n"] == 2
    assert out["speech_end_to_decision_ms"]["n"] == 1
    assert list(out)[0] == "speech_end_to_decision_ms"  # the paper's order, not alphabetical
    assert summarize([None, None]) is None


# ---------------------------------------------------------------- duplex
def test_state_accuracy_skips_unlabelled_chunks():
    labels = [LISTEN, LISTEN, RESPOND, UNLABELLED, UNLABELLED]
    assert state_accuracy([0, 0, 1, 2, 2], labels) == 1.0
    assert state_accuracy([0, 1, 0, 0, 0], labels) == pytest.approx(1 / 3, abs=1e-4)
    assert state_accuracy([0], [UNLABELLED]) is None


def test_false_respond_counts_listen_chunks_after_speech_start():
    labels = [LISTEN, LISTEN, LISTEN, LISTEN, RESPOND]
    pred = [RESPOND, LISTEN, RESPOND, LISTEN, RESPOND]
    # speech starts at chunk 1: chunk 0's respond is before any speech and not counted
    assert false_respond_rate(pred, labels, speech_chunk=1) == pytest.approx(1 / 3, abs=1e-4)
    assert false_respond_rate(pred, labels, speech_chunk=0) == pytest.approx(2 / 4, abs=1e-4)
    c = StateCounts()
    add_stream(c, pred, labels, 1)
    add_stream(c, [IGNORE, IGNORE], [IGNORE, LISTEN], 0)
    s = state_scores(c)
    assert s["chunks"] == 7 and s["recall"]["ignore"] == 1.0 and s["recall"]["respond"] == 1.0
    assert s["false_respond_rate"] == pytest.approx(1 / 4, abs=1e-4)


def test_decision_scores_delay_premature_missed_and_false():
    outcomes = [
        StreamOutcome(True, 1.0, [1.32]),  # answered 320 ms after the end
        StreamOutcome(True, 2.0, [1.5, 2.2]),  # interrupted a pause: premature
        StreamOutcome(True, 1.0, []),  # missed
        StreamOutcome(False, None, [0.8]),  # responded to a statement
        StreamOutcome(False, None, []),
    ]
    s = decision_scores(outcomes)
    assert s["respond_delays_ms"] == [320.0]
    assert s["premature_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert s["missed_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert s["false_respond_streams"] == 0.5


def test_speech_end_from_labels_when_unknown():
    assert speech_end_time([0, 0, 0, 1, -100], None) == pytest.approx(0.48, abs=1e-4)
    assert speech_end_time([0, 1], 0.2) == 0.2
    assert speech_end_time([0, 0, 2], None) is None
