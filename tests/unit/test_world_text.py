"""Text helpers of the speech world: answers, spoken numbers, sentence cleaning, duplex statements."""

import pytest

from omnikit.data.world.builder import _speakable, clean_answer
from omnikit.data.world.opendomain import article, clean_sentence

pytest.importorskip("num2words")


def test_clean_answer_drops_a_cut_off_sentence_but_keeps_a_single_one():
    assert clean_answer("Tokyo is the capital.  It is large and") == "Tokyo is the capital."
    assert clean_answer("It is large and") == "It is large and"
    assert clean_answer("Yes. Sure!") == "Yes. Sure!"


def test_only_latin_script_answers_are_spoken_by_the_assistant():
    assert _speakable("Café “au lait” — fine…")
    assert not _speakable("The capital is B息.")
    assert not _speakable("")


def test_sentences_are_normalised_for_speech():
    from omnikit.data.world.facts import spoken_numbers

    assert spoken_numbers("found in 1886 with 3.8 days") == "found in eighteen eighty-six with three point eight days"
    assert clean_sentence("the oceans are teeming with life") == "The oceans are teeming with life."
    assert clean_sentence("too short") is None
    assert clean_sentence("Represent and manipulate single IPv4 addresses.") is None
    assert clean_sentence("uses <html> tags in this text") is None
    assert article("apple") == "an" and article("violin") == "a"
