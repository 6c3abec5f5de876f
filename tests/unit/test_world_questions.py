"""The speech world from your own text: a JSONL of questions (answers optional, the rest answered by the
"frozen LLM", here a fake), your own plain sentences, another espeak-ng language, and resuming the audio."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from omnikit.data.tts import espeak
from omnikit.data.world.builder import SpeechWorldConfig, SpeechWorldDataset

pytestmark = pytest.mark.skipif(not espeak.available(), reason="needs espeak-ng (apt-get install espeak-ng)")

QUESTIONS = [
    {"question": "What colour is the sky?", "answer": "The sky is blue on a clear day."},
    {"question": "How many legs does a spider have?", "answer": "A spider has eight legs.", "split": "dev"},
    {"question": "Why do cats purr?"},
    {"question": "What is a good name for a dog?", "split": "test"},
    {"question": "Where does rain come from?"},
    {"question": "Why do   cats purr?"},  # the same question again, spaced differently: asked once
]
SENTENCES = ["the garden is green in spring", "we walked to the station", "my brother plays the piano",
             "a cup of tea is ready", "the train left at noon"]


class CountingAnswerer:
    name = "counting"

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, question: str) -> str:
        self.asked.append(question)
        return f"My answer to {question.lower().rstrip('?')}."


def _files(tmp: Path, questions=QUESTIONS, sentences=SENTENCES) -> tuple[Path, Path]:
    q, s = tmp / "questions.jsonl", tmp / "sentences.txt"
    q.write_text("\n".join(json.dumps(r) for r in questions) + "\n")
    s.write_text("\n".join(sentences) + "\n")
    return q, s


def _config(q: Path, s: Path | None, **kw) -> SpeechWorldConfig:
    base = dict(seed=0, workers=0, scale=0.1, duplex_examples=20, tts_plain_sentences=10, questions_file=str(q),
                sentences_file=str(s) if s else None, voices=["espeak:en-US", "espeak:en"], dev_voices=[],
                test_voices=[], tts_voice="espeak:en-US", noise_prob=0.0, reverb_prob=0.0)
    return SpeechWorldConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("own")
    q, s = _files(tmp)
    answerer = CountingAnswerer()
    ds = SpeechWorldDataset(_config(q, s), answerer=answerer)
    ds.prepare(tmp / "world")
    return ds, tmp / "world", answerer


def test_every_question_of_the_file_is_spoken_with_its_answer(built):
    ds, root, answerer = built
    dialogue = [c for split in ("train", "dev", "test") for c in ds.cuts(f"dialogue_{split}", root)]
    asked = {c.custom["question"]: c for c in dialogue}
    assert set(asked) == {" ".join(r["question"].split()) for r in QUESTIONS}  # 5: the repeat is one
    assert asked["What colour is the sky?"].custom["answer"] == "The sky is blue on a clear day."
    assert asked["How many legs does a spider have?"].custom["split"] == "dev"
    assert asked["What is a good name for a dog?"].custom["split"] == "test"
    # the frozen LLM (here a fake) answered only the questions without an answer, once each
    assert sorted(answerer.asked) == sorted(["Why do cats purr?", "What is a good name for a dog?",
                                            "Where does rain come from?"])
    assert asked["Why do cats purr?"].custom["answer"] == "My answer to why do cats purr."
    for cut in dialogue:
        assert cut.custom["kind"] == "user" and cut.supervisions[0].text == cut.custom["question"]
        assert cut.load_audio().shape[1] == cut.num_samples > 1600


def test_your_sentences_replace_the_built_in_ones(built):
    ds, root, _ = built
    plain = {c.supervisions[0].text for split in ("train", "dev", "test") for c in ds.cuts(f"asr_{split}", root)
             if c.custom["kind"] == "plain"}
    assert plain == set(SENTENCES)
    tts = [c for c in ds.cuts("tts_train", root)] + [c for c in ds.cuts("tts_dev", root)]
    assert {c.custom["kind"] for c in tts} <= {"answer", "plain"} and tts
    assert all(c.supervisions[0].text in set(SENTENCES) for c in tts if c.custom["kind"] == "plain")


def test_an_interrupted_build_resumes_without_rendering_again(built, tmp_path):
    ds, root, _ = built
    wavs = sorted(root.glob("audio/*/*.wav"))
    assert wavs and all(w.with_suffix(".json").is_file() for w in wavs)  # resume_audio: on with questions_file
    stamps = {w: w.stat().st_mtime_ns for w in wavs}
    (root / "prepared.json").unlink()  # as if killed before the end
    wavs[0].unlink()
    again = SpeechWorldDataset(ds.config, answerer=CountingAnswerer())
    again.prepare(root)
    assert wavs[0].is_file()
    assert all(w.stat().st_mtime_ns == stamps[w] for w in wavs[1:])  # kept, not rendered again
    assert again.answerer.asked == []  # and the answers came from the cache
    assert json.loads((root / "prepared.json").read_text())["fingerprint"] == ds.fingerprint()


def test_another_language_is_one_argument(tmp_path):
    q, s = _files(tmp_path, [{"question": "Wie spät ist es?", "answer": "Es ist drei Uhr."},
                             {"question": "Was ist die Hauptstadt von Frankreich?", "answer": "Paris."},
                             {"question": "Wie heißt du?", "answer": "Ich heiße Omni."}],
                  ["der Hund läuft nach Hause", "wir trinken gern Tee", "das Wetter ist schön"])
    cfg = SpeechWorldConfig(workers=0, scale=0.1, duplex_examples=10, tts_plain_sentences=5, questions_file=str(q),
                            sentences_file=str(s), language="de", noise_prob=0.0, reverb_prob=0.0)
    ds = SpeechWorldDataset(cfg, answerer=CountingAnswerer())
    assert ds.config.voices == ["espeak:de"] and ds.config.tts_voice == "espeak:de"
    assert ds.config.dev_voices == [] and ds.config.test_voices == []
    ds.prepare(tmp_path / "world")
    assert ds.answerer.asked == []  # every answer given
    cuts = [c for p in ds.parts for c in ds.cuts(p, tmp_path / "world")]
    assert cuts and all(c.custom["voice"] == "espeak:de" and c.custom["voice_detail"].startswith("espeak:de+")
                        for c in cuts)
    assert any(c.supervisions[0].text == "Es ist drei Uhr." for c in ds.cuts("tts_train", tmp_path / "world"))


def test_an_unknown_language_stops_with_the_way_to_list_them(tmp_path):
    q, s = _files(tmp_path)
    ds = SpeechWorldDataset(_config(q, s, language="xx-nowhere", voices=["espeak:xx-nowhere"]),
                            answerer=CountingAnswerer())
    with pytest.raises(ValueError, match="espeak-ng --voices"):
        ds.prepare(tmp_path / "world")


def test_bad_question_lines_are_named(tmp_path):
    q = tmp_path / "q.jsonl"
    q.write_text('{"question": "fine?"}\nnot json\n')
    with pytest.raises(ValueError, match=r"q.jsonl:2: not a JSON object"):
        SpeechWorldDataset(_config(q, None), answerer=CountingAnswerer()).plan()
    q.write_text('{"question": "fine?", "split": "holdout"}\n')
    with pytest.raises(ValueError, match=r"q.jsonl:1: split must be one of train, dev, test"):
        SpeechWorldDataset(_config(q, None), answerer=CountingAnswerer()).plan()


def test_the_default_build_keeps_its_fingerprint():
    """Worlds built before these options existed stay valid: the new options at None change no digest."""
    assert SpeechWorldDataset(SpeechWorldConfig()).fingerprint() == "9671e2de871ac1d9"
