"""Error rates of transcripts: character (CER) and word (WER) error rate, corpus-level and per group."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from omnikit.data.char_vocab import edit_distance
from omnikit.evaluation.asr_judge import normalize


def char_errors(ref: str, hyp: str) -> tuple[int, int]:
    """(character edit distance, reference length) after ``normalize`` (lower case, no punctuation)."""
    r, h = normalize(ref), normalize(hyp)
    return edit_distance(r, h), len(r)


def word_errors(ref: str, hyp: str) -> tuple[int, int]:
    """(word edit distance, reference word count) after ``normalize``."""
    r, h = normalize(ref).split(), normalize(hyp).split()
    return edit_distance(r, h), len(r)


def _rate(refs: Sequence[str], hyps: Sequence[str], count) -> float:
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    errs = total = 0
    for r, h in zip(refs, hyps, strict=True):
        e, n = count(r, h)
        errs, total = errs + e, total + n
    return errs / max(total, 1)


def cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus CER: total character errors / total reference characters (spaces count as characters)."""
    return _rate(refs, hyps, char_errors)


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus WER: total word errors / total reference words."""
    return _rate(refs, hyps, word_errors)


def error_rates(refs: Sequence[str], hyps: Sequence[str], groups: Sequence[str] | None = None) -> dict:
    """``{"cer", "wer", "n"}`` over all pairs, plus ``by_group`` when ``groups`` (e.g. the voice) is given."""
    out: dict = {"cer": round(cer(refs, hyps), 4), "wer": round(wer(refs, hyps), 4), "n": len(refs)}
    if groups is not None:
        buckets: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
        for r, h, g in zip(refs, hyps, groups, strict=True):
            buckets[g][0].append(r)
            buckets[g][1].append(h)
        out["by_group"] = {g: error_rates(rs, hs) for g, (rs, hs) in sorted(buckets.items())}
    return out
