"""A tiny speech-world build (espeak-ng voices, a fake answerer): manifests, fields, determinism."""

import gzip
import hashlib
from pathlib import Path

import pytest

from omnikit.data.tts import espeak
from omnikit.data.world.builder import PARTS, SpeechWorldDataset
from omnikit.data.world.duplex import CHUNK_S, RESPOND, first_chunk_at_or_after, num_chunks

pytestmark = pytest.mark.skipif(not espeak.available(), reason="needs espeak-ng (apt-get install espeak-ng)")
pytest.importorskip("countryinfo")

VOICES = ["espeak:en-US", "espeak:en", "espeak:en-GB-x-rp", "espeak:en-US-nyc", "espeak:en-029"]


def fake_answerer(question: str) -> str:
    return f"Here is my answer to: {question}"


def _dataset(seed: int = 0, workers: int = 0) -> SpeechWorldDataset:
    cfg = SpeechWorldDataset.config_class(
        seed=seed, workers=workers, scale=0.01, duplex_examples=1000, voices=VOICES, dev_voices=["espeak:en-US-nyc"],
        test_voices=["espeak:en-029"], tts_voice="espeak:en-US", unseen_voice_fraction=0.7,
    )
    return SpeechWorldDataset(cfg, answerer=fake_answerer)


def _digest(root: Path) -> str:
    h = hashlib.sha1()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name not in ("answers.jsonl", "prepared.json"):  # timings differ
            data = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
            h.update(str(p.relative_to(root)).encode() + data)
    return h.hexdigest()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    ds = _dataset()
    ds.prepare(root)
    return ds, root


def test_every_part_loads_with_custom_fields(built):
    ds, root = built
    assert ds.parts == PARTS
    for part in PARTS:
        cuts = ds.cuts(part, root)
        assert len(cuts) > 0, part
        for cut in cuts:
            assert cut.custom["split"] == part.split("_")[1] and cut.custom["voice"]
            assert cut.custom["kind"] in {"fact", "open", "plain", "answer"}
    cut = next(iter(ds.cuts("dialogue_train", root)))
    assert cut.custom["answer"] == fake_answerer(cut.custom["question"])
    assert cut.supervisions[0].text == cut.custom["question"]
    audio = cut.load_audio()
    assert cut.sampling_rate == 16000 and audio.shape[1] == cut.num_samples and abs(audio).max() > 0.01
    tts = next(iter(ds.cuts("tts_train", root)))
    assert tts.sampling_rate == 24000 and tts.supervisions[0].text


def test_held_out_voice_only_in_test(built):
    ds, root = built
    voices = {p: {c.custom["voice"] for c in ds.cuts(p, root)} for p in PARTS}
    for part, vs in voices.items():
        if not part.endswith("test"):
            assert "espeak:en-029" not in vs, part
        if part.endswith("train"):
            assert "espeak:en-US-nyc" not in vs, part
    assert "espeak:en-029" in voices["asr_test"] | voices["duplex_test"] | voices["dialogue_test"]


def test_facts_in_test_never_spoken_in_training(built):
    ds, root = built
    train = {c.custom.get("entity") for p in ("asr_train", "dialogue_train", "duplex_train") for c in ds.cuts(p, root)}
    test = {c.custom.get("entity") for c in ds.cuts("dialogue_test", root)}
    assert test and not (train - {None}) & test


def test_duplex_labels_cover_each_chunk_and_respond_after_speech_end(built):
    ds, root = built
    cuts = list(ds.cuts("duplex_train", root))
    assert len(cuts) >= 5
    with_question = 0
    for cut in cuts:
        labels = cut.custom["state_labels"]
        assert len(labels) == num_chunks(cut.duration)
        assert cut.duration / CHUNK_S == pytest.approx(len(labels), abs=1e-3)
        if cut.custom.get("question"):
            with_question += 1
            first = first_chunk_at_or_after(cut.custom["speech_end"])
            assert labels[first] == RESPOND and RESPOND not in labels[:first]
            assert cut.supervisions[0].text == cut.custom["question"]
        else:
            assert RESPOND not in labels
    assert with_question > 0


def test_prepare_is_cached_and_deterministic(built, tmp_path):
    ds, root = built
    stamp = (root / "prepared.json").stat().st_mtime_ns
    ds.prepare(root)
    assert (root / "prepared.json").stat().st_mtime_ns == stamp
    small = dict(fact_questions=300, open_questions=0, plain_sentences=300, duplex_examples=300, tts_plain_sentences=0)
    digests = []
    for name, workers in [("a", 0), ("b", 2)]:  # inline and two processes build the same bytes
        d = _dataset(0, workers)
        for k, v in small.items():
            setattr(d.config, k, v)
        d.prepare(tmp_path / name)
        digests.append(_digest(tmp_path / name))
    assert digests[0] == digests[1]
    assert digests[0] != _digest(root)  # a different config builds different data


@pytest.mark.slow
def test_default_voices_build_with_natural_voices(tmp_path):
    """hibari, piper and espeak together, the assistant voice at 24 kHz, reproducible (needs ``world``)."""
    pytest.importorskip("hibari")
    pytest.importorskip("piper")
    cfg = SpeechWorldDataset.config_class(scale=0.01, workers=0, unseen_voice_fraction=0.0)
    ds = SpeechWorldDataset(cfg, answerer=fake_answerer)
    ds.prepare(tmp_path / "a")
    voices = {c.custom["voice"] for p in ("asr_train", "asr_dev") for c in ds.cuts(p, tmp_path / "a")}
    assert {"hibari:heart", "piper:joe"} & voices
    tts = list(ds.cuts("tts_train", tmp_path / "a"))
    assert tts and all(c.sampling_rate == 24000 and c.custom["voice"] == "hibari:heart" for c in tts)
    SpeechWorldDataset(cfg, answerer=fake_answerer).prepare(tmp_path / "b")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
