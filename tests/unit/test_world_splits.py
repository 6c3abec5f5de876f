"""Speech-world splits: disjoint entities and topics, held-out phrasings and voices, deterministic plans."""

import pytest

from omnikit.data.world.builder import SpeechWorldDataset
from omnikit.data.world.splits import split_of
from omnikit.data.world.voices import split_voices

pytest.importorskip("countryinfo")
pytest.importorskip("mendeleev")


def _dataset(**kw):
    cfg = SpeechWorldDataset.config_class(scale=0.05, **kw)
    return SpeechWorldDataset(cfg, answerer=lambda q: "ok.")


@pytest.fixture(scope="module")
def plan():
    return _dataset().plan()


def test_facts_and_topics_are_disjoint_across_splits(plan):
    entities = {s: {q.entity for q in plan[s]["questions"]} for s in plan}
    topics = {s: {x.topic for x in plan[s]["sentences"]} for s in plan}
    for a, b in [("train", "dev"), ("train", "test"), ("dev", "test")]:
        assert not entities[a] & entities[b]
        assert not topics[a] & topics[b]
    test_topics = {e.split(":")[0] for e in entities["test"] if e.startswith("noun.")}
    assert test_topics and test_topics <= {"noun.food", "noun.plant"}
    assert all(q.template_seen for q in plan["train"]["questions"])
    assert any(q.kind == "fact" for q in plan["test"]["questions"])
    assert any(q.kind == "open" for q in plan["test"]["questions"])


def test_plan_is_deterministic_and_depends_on_seed(plan):
    again = _dataset().plan()
    assert [q.text for q in again["train"]["questions"]] == [q.text for q in plan["train"]["questions"]]
    assert [x.text for x in again["test"]["sentences"]] == [x.text for x in plan["test"]["sentences"]]
    other = _dataset(seed=1).plan()
    assert [q.text for q in other["train"]["questions"]] != [q.text for q in plan["train"]["questions"]]


def test_split_of_is_stable_and_roughly_proportional():
    keys = [f"country:{i}" for i in range(2000)]
    splits = [split_of(k, 0, 0.1, 0.1) for k in keys]
    assert splits == [split_of(k, 0, 0.1, 0.1) for k in keys]
    assert 0.06 < splits.count("test") / len(keys) < 0.14


def test_held_out_voices_only_in_their_splits():
    voices = ["hibari:heart", "piper:joe", "espeak:en-US", "espeak:en-029"]
    pools = split_voices(voices, dev_voices=["espeak:en-US"], test_voices=["piper:joe"])
    assert "piper:joe" not in pools["train"][0] + pools["train"][1]
    assert "piper:joe" not in pools["dev"][0] + pools["dev"][1]
    assert "piper:joe" in pools["test"][1] and "espeak:en-US" in pools["dev"][1]
    with pytest.raises(ValueError):
        split_voices(voices, dev_voices=["espeak:en-GB"], test_voices=[])
