"""Error rates of transcripts: character (CER) and word (WER) error rate, corpus-level and per group.

The one place omnikit counts transcript errors (every judge, eval and benchmark reads it); the edit distances
are jiwer's, after omnikit's own ``normalize``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence

import jiwer


def normalize(text: str) -> str:
    """Lower-case, drop punctuation (keeping in-word apostrophes), collapse spaces."""
    text = text.lower().replace("-", " ")
    text = re.sub(r"[^a-z0-9' ]+", " ", text)
    return " ".join(w.strip("'") for w in text.split() if w.strip("'"))


def _edits(out: jiwer.WordOutput | jiwer.CharacterOutput) -> int:
    return out.substitutions + out.deletions + out.insertions


def char_errors(ref: str, hyp: str) -> tuple[int, int]:
    """(character edit distance, reference length) after ``normalize`` (lower case, no punctuation)."""
    r, h = normalize(ref), normalize(hyp)
    if not r:
        return len(h), 0
    return _edits(jiwer.process_characters(r, h)), len(r)


def word_errors(ref: str, hyp: str) -> tuple[int, int]:
    """(word edit distance, reference word count) after ``normalize``."""
    r, h = normalize(ref), normalize(hyp)
    if not r:
        return len(h.split()), 0
    return _edits(jiwer.process_words(r, h)), len(r.split())


def _rate(refs: str | Sequence[str], hyps: str | Sequence[str], count) -> float:
    refs = [refs] if isinstance(refs, str) else list(refs)
    hyps = [hyps] if isinstance(hyps, str) else list(hyps)
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    errs = total = 0
    for r, h in zip(refs, hyps, strict=True):
        e, n = count(r, h)
        errs, total = errs + e, total + n
    return errs / max(total, 1)


def cer(refs: str | Sequence[str], hyps: str | Sequence[str]) -> float:
    """CER of one pair, or corpus CER of two lists: total character errors / total reference characters (spaces
    count as characters)."""
    return _rate(refs, hyps, char_errors)


def wer(refs: str | Sequence[str], hyps: str | Sequence[str]) -> float:
    """WER of one pair, or corpus WER of two lists: total word errors / total reference words."""
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
