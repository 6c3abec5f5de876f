"""An offline ASR judge: pocketsphinx (bundled en-US model) transcripts and word error rate.

Use it to score the intelligibility of natural voices (hibari, piper): it reads about 5-9 % WER on clean TTS
speech and is unreliable on robotic voices (espeak-ng). ``pip install pocketsphinx`` (the ``world`` extra).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from omnikit.evaluation.text_metrics import normalize, wer, word_errors

__all__ = ["JUDGE_RATE", "normalize", "transcribe", "wer", "word_errors"]

JUDGE_RATE = 16_000
"""pocketsphinx's acoustic model rate (Hz); ``transcribe`` expects audio at this rate."""


@lru_cache(maxsize=1)
def _decoder() -> Any:
    try:
        from pocketsphinx import Decoder
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("pocketsphinx is not installed: pip install pocketsphinx (omnikit[world])") from e
    return Decoder(samprate=JUDGE_RATE, loglevel="FATAL")


def _to_int16(wav: Any) -> bytes:
    x = wav.detach().cpu().numpy() if hasattr(wav, "detach") else np.asarray(wav)
    x = np.asarray(x, dtype=np.float32).reshape(-1)
    return (np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def transcribe(wav16k: Any) -> str:
    """Mono float audio at 16 kHz (numpy array or tensor, values in [-1, 1]) -> lower-case transcript."""
    dec = _decoder()
    dec.start_utt()
    dec.process_raw(_to_int16(wav16k), full_utt=True)
    dec.end_utt()
    hyp = dec.hyp()
    return normalize(hyp.hypstr) if hyp is not None else ""
