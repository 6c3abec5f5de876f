"""Duplex metrics: chunk-level state accuracy, false "respond" inside pauses, and the delay of the decision.

Labels follow the duplex parts (``custom["state_labels"]``): 0 listen, 1 respond, 2 ignore, -100 unlabelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

LISTEN, RESPOND, IGNORE, UNLABELLED = 0, 1, 2, -100
STATE_NAMES = {LISTEN: "listen", RESPOND: "respond", IGNORE: "ignore"}


@dataclass
class StateCounts:
    """Chunk counts accumulated over streams."""

    correct: int = 0
    total: int = 0
    per_class_correct: dict[int, int] | None = None
    per_class_total: dict[int, int] | None = None
    pause_chunks: int = 0  # listen-labelled chunks after the first speech
    pause_false_respond: int = 0  # of those, predicted respond

    def __post_init__(self) -> None:
        self.per_class_correct = self.per_class_correct or {}
        self.per_class_total = self.per_class_total or {}


def first_speech_chunk(labels: Sequence[int], speech_start_s: float | None, chunk_s: float = 0.16) -> int:
    """Index of the chunk where the user's speech starts (from the known start time, else chunk 0)."""
    if speech_start_s is None:
        return 0
    return max(0, int(speech_start_s / chunk_s))


def add_stream(counts: StateCounts, pred: Sequence[int], labels: Sequence[int], speech_chunk: int = 0) -> None:
    """Score one stream's per-chunk predictions against its labels (unlabelled chunks and chunks past the
    shorter of the two sequences are skipped).

    False respond: a chunk labelled listen at or after ``speech_chunk`` (the user has started speaking, so this
    is speech or a pause inside it) that the model labels respond.
    """
    for i, (p, y) in enumerate(zip(pred, labels, strict=False)):
        if y == UNLABELLED:
            continue
        counts.total += 1
        counts.per_class_total[y] = counts.per_class_total.get(y, 0) + 1
        if p == y:
            counts.correct += 1
            counts.per_class_correct[y] = counts.per_class_correct.get(y, 0) + 1
        if y == LISTEN and i >= speech_chunk:
            counts.pause_chunks += 1
            counts.pause_false_respond += int(p == RESPOND)


def state_scores(counts: StateCounts) -> dict:
    """Accuracy, per-class recall and the false-respond rate of accumulated counts."""
    out: dict = {"chunks": counts.total, "accuracy": round(counts.correct / counts.total, 4) if counts.total else None}
    out["recall"] = {STATE_NAMES.get(c, str(c)): round(counts.per_class_correct.get(c, 0) / n, 4)
                     for c, n in sorted(counts.per_class_total.items())}
    out["false_respond_rate"] = (round(counts.pause_false_respond / counts.pause_chunks, 4)
                                 if counts.pause_chunks else None)
    return out


def state_accuracy(pred: Sequence[int], labels: Sequence[int]) -> float | None:
    """Fraction of labelled chunks where the predicted state equals the label (None: no labelled chunk)."""
    c = StateCounts()
    add_stream(c, pred, labels)
    return c.correct / c.total if c.total else None


def false_respond_rate(pred: Sequence[int], labels: Sequence[int], speech_chunk: int = 0) -> float | None:
    """Fraction of listen chunks at or after ``speech_chunk`` predicted respond (None: no such chunk)."""
    c = StateCounts()
    add_stream(c, pred, labels, speech_chunk)
    return c.pause_false_respond / c.pause_chunks if c.pause_chunks else None


def speech_end_time(labels: Sequence[int], speech_end_s: float | None, chunk_s: float = 0.16) -> float | None:
    """When the question ended: the known time, else the start of the first respond-labelled chunk."""
    if speech_end_s is not None:
        return float(speech_end_s)
    for i, y in enumerate(labels):
        if y == RESPOND:
            return i * chunk_s
    return None


@dataclass
class StreamOutcome:
    """What streaming one duplex example through a session decided."""

    expects_response: bool  # the labels contain respond
    speech_end_s: float | None
    respond_times: list[float]  # input-stream times (s) of RESPOND decisions


def decision_scores(outcomes: Sequence[StreamOutcome], tolerance_s: float = 0.0) -> dict:
    """Streaming duplex behaviour.

    - ``respond_delays_ms``: for streams that expect a response, first RESPOND at or after the speech end minus
      the speech end (ms);
    - ``premature_rate``: of those streams, the share whose first RESPOND came before the speech ended
      (``tolerance_s`` early is allowed): an interruption inside a pause;
    - ``missed_rate``: of those streams, the share with no RESPOND at all;
    - ``false_respond_streams``: of the streams that expect none (statements, noise), the share with a RESPOND.
    """
    asked = [o for o in outcomes if o.expects_response and o.speech_end_s is not None]
    other = [o for o in outcomes if not o.expects_response]
    delays, premature, missed = [], 0, 0
    for o in asked:
        if not o.respond_times:
            missed += 1
            continue
        first = min(o.respond_times)
        if first < o.speech_end_s - tolerance_s:
            premature += 1
        else:
            delays.append(round((first - o.speech_end_s) * 1000.0, 1))
    return {
        "streams": len(outcomes),
        "respond_delays_ms": delays,
        "premature_rate": round(premature / len(asked), 4) if asked else None,
        "missed_rate": round(missed / len(asked), 4) if asked else None,
        "false_respond_streams": round(sum(bool(o.respond_times) for o in other) / len(other), 4) if other else None,
    }
