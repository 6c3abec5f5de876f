"""Latency statistics: median and p90 of each field of the paper's per-answer breakdown (ms)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

LATENCY_FIELDS = (
    "speech_end_to_decision_ms",
    "decision_to_first_segment_ms",
    "segment_to_decoder_prefill_ms",
    "prefill_to_first_token_chunk_ms",
    "token_chunk_to_first_pcm_ms",
    "decision_to_first_pcm_ms",
)
"""The fields of :class:`omnikit.inference.session.AnswerTimings`, in the order a turn goes through them."""


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between order statistics (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    xs = sorted(float(v) for v in values)
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(values: Iterable[float | None]) -> dict[str, float] | None:
    """``{"median", "p90", "mean", "n"}`` of the non-None values, or None if there are none."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return None
    return {"median": round(percentile(xs, 50), 2), "p90": round(percentile(xs, 90), 2),
            "mean": round(sum(xs) / len(xs), 2), "n": len(xs)}


def latency_breakdown(timings: Sequence[Mapping[str, float | None]]) -> dict[str, dict[str, float]]:
    """Per latency field (known fields first, then any others), the summary over turns; absent fields skipped."""
    keys = list(LATENCY_FIELDS) + sorted({k for t in timings for k in t} - set(LATENCY_FIELDS))
    out = {}
    for k in keys:
        s = summarize(t.get(k) for t in timings)
        if s is not None:
            out[k] = s
    return out
