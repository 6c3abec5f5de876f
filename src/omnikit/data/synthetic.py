"""``synthetic_tones``: a tiny deterministic synthetic speech world for smoke tests (no TTS, no downloads).

Every character is rendered as a short tone whose pitch encodes the character, so an encoder can learn to read
it (CTC), an adapter can learn to hand it to the LLM, and the chunk state labels follow the end of speech.
The "user" voice is a pure tone whose pitch varies by utterance; the "assistant" voice adds a second harmonic
at a fixed pitch, so a codec trained on it sees one voice. Everything is a pure function of ``seed``.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import string
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from lhotse import CutSet, Recording, SupervisionSegment

from omnikit.registry import param

PARTS = [
    "asr_train", "asr_dev", "dialogue_train", "dialogue_dev", "duplex_train", "duplex_dev", "tts_train", "tts_dev",
]
SAMPLE_RATE = 16_000
CHUNK_SAMPLES = 2560  # 160 ms: one state label
LISTEN, RESPOND, IGNORE = 0, 1, 2
UNLABELLED = -100
VERSION = 1


@dataclass
class SyntheticTonesConfig:
    num_train: int = param(64, "Cuts per training part.")
    num_dev: int = param(8, "Cuts per dev part.")
    words: list[str] = param(factory=lambda: ["red", "blue", "cat", "dog", "sun", "tree", "fish", "bird", "one", "two"],
                             doc="Vocabulary of user questions (lower-case letters only).")
    fillers: list[str] = param(factory=lambda: ["hmm", "uh huh", "okay"],
                               doc="Back-channel utterances: duplex cuts labelled IGNORE (no answer).")
    max_words: int = param(3, "Words per utterance (1..max_words).")
    char_ms: int = param(50, "Tone length of one character (ms).")
    gap_ms: int = param(10, "Silence between characters (ms); a space is 4 gaps.")
    ignore_fraction: float = param(0.25, "Fraction of duplex cuts that are back-channels (IGNORE).")
    seed: int = param(0, "Seed of the whole world.")


def char_frequency(ch: str) -> float:
    """The pitch that encodes a character: a..z on a 250 Hz..2.5 kHz ladder, digits and ' above it."""
    alphabet = string.ascii_lowercase + string.digits + "'"
    return 250.0 + 90.0 * alphabet.index(ch)


def render(text: str, cfg: SyntheticTonesConfig, pitch: float = 1.0, harmonics: int = 1) -> np.ndarray:
    """Tone rendering of ``text`` at 16 kHz (float32 in [-1, 1])."""
    n_char = int(SAMPLE_RATE * cfg.char_ms / 1000)
    gap = np.zeros(int(SAMPLE_RATE * cfg.gap_ms / 1000), dtype=np.float32)
    t = np.arange(n_char) / SAMPLE_RATE
    env = np.sin(np.pi * np.arange(n_char) / n_char) ** 0.5
    pieces: list[np.ndarray] = []
    for ch in text:
        if ch == " ":
            pieces.append(np.zeros(4 * gap.size, dtype=np.float32))
            continue
        f = char_frequency(ch) * pitch
        tone = sum(np.sin(2 * np.pi * f * (h + 1) * t) / (h + 1) for h in range(harmonics))
        pieces += [(0.3 * env * tone).astype(np.float32), gap]
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


def answer_for(question: str) -> str:
    """The world's deterministic "LLM answer" to a question: its words in reverse order."""
    return " ".join(reversed(question.split()))


def state_labels(n_samples: int, speech_end: int) -> list[int]:
    """Per 160 ms chunk: LISTEN while the user speaks, the decision on the first chunk after the speech ends."""
    n_chunks = math.ceil(n_samples / CHUNK_SAMPLES)
    end_chunk = math.ceil(speech_end / CHUNK_SAMPLES)  # first chunk entirely after the last speech sample
    return [LISTEN if c < end_chunk else (RESPOND if c == end_chunk else UNLABELLED) for c in range(n_chunks)]


class SyntheticSpeechDataset:
    """Tiny deterministic tone "speech world" with all eight parts (ASR, dialogue, duplex, assistant voice).

    ``prepare(root)`` writes 16 kHz WAV files and one lhotse CutSet manifest per part (``<part>.jsonl.gz``);
    it is idempotent (a stamp of the config skips work already done). Dialogue answers are the question's
    words reversed; duplex cuts end with 0.5 s of silence, labelled LISTEN while speech lasts and RESPOND (or
    IGNORE for back-channels, which have no answer) on the first chunk after it, unlabelled (-100) after that.
    """

    config_class = SyntheticTonesConfig
    parts = PARTS

    def __init__(self, config: SyntheticTonesConfig, **_: object):
        self.config = config

    def _stamp(self) -> str:
        blob = json.dumps({"version": VERSION, **asdict(self.config)}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()

    def prepare(self, root: Path) -> None:
        root = Path(root)
        stamp = root / "synthetic_tones.stamp"
        if stamp.is_file() and stamp.read_text() == self._stamp():
            return
        root.mkdir(parents=True, exist_ok=True)
        for i, part in enumerate(PARTS):
            rng = random.Random(f"{self.config.seed}-{i}")
            n = self.config.num_train if part.endswith("_train") else self.config.num_dev
            cuts = [self._make_cut(part, k, rng, root) for k in range(n)]
            CutSet.from_cuts(cuts).to_file(root / f"{part}.jsonl.gz")
        stamp.write_text(self._stamp())

    def cuts(self, part: str, root: Path) -> CutSet:
        if part not in PARTS:
            raise ValueError(f"synthetic_tones has no part '{part}'; parts: {', '.join(PARTS)}")
        return CutSet.from_file(Path(root) / f"{part}.jsonl.gz")

    def _sentence(self, rng: random.Random) -> str:
        return " ".join(rng.choice(self.config.words) for _ in range(rng.randint(1, self.config.max_words)))

    def _make_cut(self, part: str, k: int, rng: random.Random, root: Path):
        cfg = self.config
        kind = part.split("_")[0]
        custom: dict = {}
        lead = np.zeros(int(SAMPLE_RATE * rng.uniform(0.05, 0.2)), dtype=np.float32)
        if kind == "tts":
            text = answer_for(self._sentence(rng))
            audio = np.concatenate([lead, render(text, cfg, pitch=1.0, harmonics=2)])
        else:
            filler = kind == "duplex" and rng.random() < cfg.ignore_fraction
            text = rng.choice(cfg.fillers) if filler else self._sentence(rng)
            audio = np.concatenate([lead, render(text, cfg, pitch=rng.uniform(0.93, 1.07))])
            if kind in ("dialogue", "duplex") and not filler:
                custom["answer"] = answer_for(text)
            if kind == "duplex":
                speech_end = audio.size
                audio = np.concatenate([audio, np.zeros(SAMPLE_RATE // 2, dtype=np.float32)])
                labels = state_labels(audio.size, speech_end)
                if filler:
                    labels = [IGNORE if y == RESPOND else y for y in labels]
                custom["state_labels"] = labels
        audio = audio + np.random.default_rng(rng.randrange(2**31)).normal(0, 1e-3, audio.size).astype(np.float32)
        path = root / "audio" / part / f"{part}-{k:05d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), audio, SAMPLE_RATE, subtype="PCM_16")
        rec = Recording.from_file(path, recording_id=f"{part}-{k:05d}")
        cut = rec.to_cut()
        cut.supervisions = [
            SupervisionSegment(id=cut.id, recording_id=rec.id, start=0.0, duration=rec.duration, text=text)
        ]
        cut.custom = custom or None
        return cut
