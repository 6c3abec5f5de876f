"""Tiny corpora built on the fly for the corpus tests: spoken by espeak-ng (tones when it is missing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from omnikit.data.synthetic import SyntheticTonesConfig, render
from omnikit.data.tts import espeak
from omnikit.data.world.voices import resample

SENTENCES = [
    "the cat sat on the mat", "one two three four", "a red fish and a blue bird", "the sun is up",
    "open the door please", "it is cold today", "we like green tea", "five six seven",
    "the dog ran home", "good morning to you", "a tree by the river", "eight nine ten",
]


def speech(text: str, rate: int = 16_000) -> np.ndarray:
    """``text`` spoken at ``rate`` (float32 mono)."""
    if espeak.available():
        wav, sr = espeak.synthesize(text, accent="en-US", speed=190)
        return resample(wav, sr, rate)
    return resample(render(text, SyntheticTonesConfig()), 16_000, rate)


def folder_corpus(root: Path) -> dict[str, Path]:
    """``root/spk{1,2}/<name>.wav`` + ``<name>.txt``: 8 good 16 kHz recordings, one at 22.05 kHz, one stereo,
    and four bad ones: ``corrupt.wav`` (not audio), ``empty.wav`` (an empty transcript), ``orphan.txt`` (no
    recording) and ``lonely.wav`` (no transcript). Returns the notable paths."""
    for i, text in enumerate(SENTENCES[:8]):
        d = root / f"spk{1 + i % 2}"
        d.mkdir(parents=True, exist_ok=True)
        sf.write(d / f"utt{i}.wav", speech(text), 16_000, subtype="PCM_16")
        (d / f"utt{i}.txt").write_text(text + "\n")
    paths = {
        "rate": root / "spk2" / "wideband.wav", "stereo": root / "spk1" / "stereo.wav",
        "corrupt": root / "spk1" / "corrupt.wav", "empty": root / "spk2" / "empty.wav",
        "orphan": root / "spk1" / "orphan.txt", "lonely": root / "spk2" / "lonely.wav",
    }
    sf.write(paths["rate"], speech(SENTENCES[8], 22_050), 22_050, subtype="PCM_16")
    paths["rate"].with_suffix(".txt").write_text(SENTENCES[8])
    mono = speech(SENTENCES[9])
    sf.write(paths["stereo"], np.stack([mono, 0.5 * mono], axis=1), 16_000, subtype="PCM_16")
    paths["stereo"].with_suffix(".txt").write_text(SENTENCES[9])
    paths["corrupt"].write_bytes(b"RIFF\x00\x00\x00\x00WAVEthis is not audio at all" * 10)
    paths["corrupt"].with_suffix(".txt").write_text(SENTENCES[10])
    sf.write(paths["empty"], speech(SENTENCES[11]), 16_000, subtype="PCM_16")
    paths["empty"].with_suffix(".txt").write_text("  \n")
    paths["orphan"].write_text("words without a recording")
    sf.write(paths["lonely"], speech(SENTENCES[0]), 16_000, subtype="PCM_16")
    return paths


def librispeech_corpus(root: Path, broken: bool = False) -> dict[str, Path]:
    """``root/{train-clean-100,dev-clean}/<speaker>/<chapter>/`` in the LibriSpeech layout: FLAC files and a
    ``<speaker>-<chapter>.trans.txt`` per chapter (upper-case transcripts), 8 train and 3 dev utterances.
    ``broken`` adds a corrupt FLAC, a transcript line whose FLAC is missing and one with no text."""
    layout = {"train-clean-100": [("19", "198", 4), ("26", "495", 4)], "dev-clean": [("84", "121123", 3)]}
    k, paths = 0, {}
    for subset, chapters in layout.items():
        for spk, chapter, n in chapters:
            d = root / subset / spk / chapter
            d.mkdir(parents=True, exist_ok=True)
            lines = []
            for u in range(n):
                uid = f"{spk}-{chapter}-{u:04d}"
                text = SENTENCES[k % len(SENTENCES)]
                k += 1
                sf.write(d / f"{uid}.flac", speech(text), 16_000, format="FLAC")
                lines.append(f"{uid} {text.upper()}")
            if broken and subset == "train-clean-100" and spk == "19":
                paths["corrupt"] = d / f"{spk}-{chapter}-0100.flac"
                paths["corrupt"].write_bytes(b"fLaC but not really" * 20)
                lines.append(f"{spk}-{chapter}-0100 A BROKEN FILE")
                paths["missing"] = d / f"{spk}-{chapter}-0101.flac"
                lines.append(f"{spk}-{chapter}-0101 NO FILE FOR THIS LINE")
                paths["empty"] = d / f"{spk}-{chapter}-0102.flac"
                sf.write(paths["empty"], speech("hello"), 16_000, format="FLAC")
                lines.append(f"{spk}-{chapter}-0102")
            (d / f"{spk}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return paths
