"""Duplex streams: speech and noise laid out on a timeline with one state label per 160 ms chunk.

Labels (``omnikit.interfaces.STATES``): 0 = listen (nothing to act on yet: silence, the user still talking,
including pauses in the middle of a question), 1 = respond (the ``respond_chunks`` chunks that start at or
after the end of a question), 2 = ignore (the chunks that start after a statement not meant for the assistant
ends, and every chunk overlapping a non-speech noise burst). A question or statement is only known to be one
when it ends, so chunks *during* speech are always listen. A stream stops ``respond_chunks`` chunks after its
last event, so its duration is a whole number of chunks.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

CHUNK_S = 0.16
"""Seconds per duplex decision: 16 fbank frames of 10 ms (``omnikit.interfaces.CHUNK_FRAMES``)."""
LISTEN, RESPOND, IGNORE = 0, 1, 2

SCENARIOS = ("question", "paused_question", "statement_then_question", "noise_then_question", "statement", "noise")


@dataclass
class Event:
    """One thing on the timeline. ``kind``: question_part (a question, maybe cut by a pause), statement, noise."""

    kind: str
    start: float
    end: float
    text: str = ""
    last_of_question: bool = False  # a question_part that ends the question

    def to_dict(self) -> dict:
        return asdict(self)


def num_chunks(duration: float) -> int:
    """Number of 160 ms chunks covering ``duration`` seconds (a partial last chunk counts)."""
    return max(1, math.ceil(duration / CHUNK_S - 1e-6))


def first_chunk_at_or_after(t: float) -> int:
    """Index of the first chunk whose start is at or after ``t``."""
    return math.ceil(t / CHUNK_S - 1e-6)


def chunk_labels(duration: float, events: list[Event], respond_chunks: int = 2) -> list[int]:
    """Per-chunk labels for ``events`` (see the module docstring)."""
    n = num_chunks(duration)
    labels = [LISTEN] * n
    speech = sorted((e for e in events if e.kind != "noise"), key=lambda e: e.start)
    for e in events:
        if e.kind == "noise":
            for i in range(int(e.start / CHUNK_S), min(n, first_chunk_at_or_after(e.end))):
                labels[i] = IGNORE
    for e in speech:
        if e.kind == "question_part" and not e.last_of_question:
            continue
        label = RESPOND if e.kind == "question_part" else IGNORE
        next_start = min((s.start for s in speech if s.start >= e.end), default=math.inf)
        first = first_chunk_at_or_after(e.end)
        for i in range(first, min(n, first + respond_chunks)):
            if i * CHUNK_S < next_start:
                labels[i] = label
    return labels


def noise_burst(sr: int, rng: np.random.Generator, seconds: float) -> np.ndarray:
    """A non-speech sound: a hiss, a few knocks or a beeping tone, peak about 0.5."""
    n = max(1, int(seconds * sr))
    t = np.arange(n) / sr
    kind = rng.integers(0, 3)
    if kind == 0:  # hiss with a smooth envelope
        wav = rng.standard_normal(n) * np.sin(np.pi * t / seconds) ** 0.5
    elif kind == 1:  # knocks: decaying low thumps
        wav = np.zeros(n)
        for start in np.sort(rng.uniform(0, max(seconds - 0.15, 0.01), size=int(rng.integers(2, 5)))):
            i = int(start * sr)
            tt = t[: n - i]
            wav[i:] += np.sin(2 * np.pi * rng.uniform(80, 200) * tt) * np.exp(-tt * 40)
    else:  # beeps
        f = rng.uniform(500, 1500)
        wav = np.sin(2 * np.pi * f * t) * (np.sin(2 * np.pi * rng.uniform(2, 5) * t) > 0)
    return (0.5 * wav / (np.abs(wav).max() + 1e-9)).astype(np.float32)


def split_question(text: str, rng: np.random.Generator) -> tuple[str, str]:
    """Cut a question in two at a comma, or else at a word boundary 40-70% of the way through."""
    if ", " in text:
        head, tail = text.split(", ", 1)
        return head + ",", tail
    words = text.split()
    k = min(len(words) - 1, max(1, int(round(len(words) * rng.uniform(0.4, 0.7)))))
    return " ".join(words[:k]), " ".join(words[k:])


def lay_out(
    pieces: list[tuple[str, np.ndarray, str, bool]],
    sr: int,
    rng: np.random.Generator,
    gaps: list[float],
    lead: float,
    respond_chunks: int,
) -> tuple[np.ndarray, list[Event]]:
    """Place ``(kind, wav, text, last_of_question)`` pieces after ``lead`` seconds with ``gaps`` between them;
    pad the end to ``respond_chunks`` whole chunks after the last piece."""
    events, t = [], lead
    for i, (kind, wav, text, last) in enumerate(pieces):
        dur = len(wav) / sr
        events.append(Event(kind, round(t, 4), round(t + dur, 4), text, last))
        t += dur + (gaps[i] if i < len(gaps) else 0.0)
    end_chunk = first_chunk_at_or_after(events[-1].end) + respond_chunks
    total = int(round(end_chunk * CHUNK_S * sr))
    out = np.zeros(total, dtype=np.float32)
    for e, (_, wav, _, _) in zip(events, pieces, strict=True):
        i = int(round(e.start * sr))
        out[i : i + len(wav)] += wav[: max(0, total - i)]
    return out, events
