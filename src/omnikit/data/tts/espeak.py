"""Synthesis with the Debian ``espeak-ng`` program: robotic but very varied English voices.

Install with ``apt-get install -y espeak-ng``. Eight English accents ship with it (see ``ACCENTS``), each of
which can be combined with a voice variant (``en-US+f3``), a speed (words per minute), a pitch (0-99) and a
gap between words. Each call runs one short-lived process, so calls are safe from any thread or process.
"""

from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np
import soundfile as sf

ACCENTS = (
    "en-US",
    "en",
    "en-GB-x-rp",
    "en-GB-scotland",
    "en-GB-x-gbclan",
    "en-GB-x-gbcwmd",
    "en-US-nyc",
    "en-029",
)
"""The English accents bundled with espeak-ng (American, British, RP, Scottish, Lancaster, West Midlands,
New York City, Caribbean)."""

VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt3", "croak", "john", "linda", "steph", "Andy", "Annie", "edward", "robert", "grandma",
    "grandpa", "iven", "Alicia", "david", "max", "paul", "shelby",
)  # fmt: skip
"""Voice variants (timbre presets) combined with an accent as ``accent+variant``. Whisper variants are left
out: they are hard to understand even for people."""


def available() -> bool:
    """Whether the ``espeak-ng`` program is on the PATH."""
    return shutil.which("espeak-ng") is not None


def synthesize(
    text: str,
    accent: str = "en-US",
    variant: str | None = None,
    speed: int = 160,
    pitch: int = 50,
    word_gap: int = 0,
) -> tuple[np.ndarray, int]:
    """Text -> ``(wav, sr)``: float32 mono at espeak-ng's 22.05 kHz.

    ``speed`` in words per minute (80-450), ``pitch`` 0-99, ``word_gap`` extra pause between words in units
    of 10 ms.
    """
    if not available():
        raise RuntimeError("espeak-ng is not installed: apt-get install -y espeak-ng")
    voice = f"{accent}+{variant}" if variant else accent
    cmd = ["espeak-ng", "-v", voice, "-s", str(int(speed)), "-p", str(int(pitch)), "-g", str(int(word_gap))]
    cmd += ["--stdout", "--", text]
    out = subprocess.run(cmd, capture_output=True, check=True, timeout=60).stdout
    wav, sr = sf.read(io.BytesIO(out), dtype="float32", always_2d=False)
    return np.asarray(wav, dtype=np.float32), int(sr)
