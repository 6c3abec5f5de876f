"""Spoken-QA scoring: does an answer state the reference fact, and do the spoken and written answers agree?"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from omnikit.evaluation.text_metrics import normalize, word_errors


def _number_words(text: str) -> str | None:
    """``"26"`` -> ``"twenty six"`` (when num2words is installed), so a spelled-out number also matches."""
    if not re.fullmatch(r"\d+", text.strip()):
        return None
    try:
        from num2words import num2words
    except ImportError:  # pragma: no cover - depends on the environment
        return None
    return normalize(num2words(int(text)))


def contains_reference(answer: str, reference: str) -> bool:
    """True when the normalised reference (e.g. ``"Paris"``) occurs in the normalised answer as whole words.

    A reference listing several items (``"France, Spain and Andorra"``) matches only if every item does.
    Digits also match their spelled-out form (``"26"`` ~ ``"twenty six"``).
    """
    ans = f" {normalize(answer)} "
    items = [i for i in re.split(r",| and ", reference) if normalize(i)]
    if not items:
        return False
    for item in items:
        forms = {normalize(item)} | ({w} if (w := _number_words(item)) else set())
        if not any(f" {f} " in ans for f in forms):
            return False
    return True


def answers_agree(a: str, b: str) -> bool:
    """Exact agreement after ``normalize`` (case, punctuation and spacing ignored); two empty answers do not."""
    na, nb = normalize(a), normalize(b)
    return bool(na) and na == nb


@dataclass
class QARecord:
    """One held-out question: the reference fact (None for open questions), the written and spoken answers."""

    question: str
    reference: str | None
    written: str
    spoken: str
    group: str = "all"


def qa_scores(records: Sequence[QARecord]) -> dict:
    """Accuracy on the written and on the spoken question (fact questions only), their ratio, agreement.

    ``agreement``: fraction (all questions) where the spoken answer equals the written one; ``answer_wer``:
    corpus WER of the spoken answers against the written ones (a softer agreement); ``answered``: fraction with a
    non-empty spoken answer.
    """
    facts = [r for r in records if r.reference]
    out: dict = {"n": len(records), "n_fact": len(facts)}
    if facts:
        out["written_accuracy"] = round(sum(contains_reference(r.written, r.reference) for r in facts) / len(facts), 4)
        out["spoken_accuracy"] = round(sum(contains_reference(r.spoken, r.reference) for r in facts) / len(facts), 4)
        out["spoken_to_written"] = (
            round(out["spoken_accuracy"] / out["written_accuracy"], 4) if out["written_accuracy"] > 0 else None
        )
    if records:
        out["agreement"] = round(sum(answers_agree(r.written, r.spoken) for r in records) / len(records), 4)
        errs = [word_errors(r.written, r.spoken) for r in records]
        out["answer_wer"] = round(sum(e for e, _ in errs) / max(sum(n for _, n in errs), 1), 4)
        out["answered"] = round(sum(bool(normalize(r.spoken)) for r in records) / len(records), 4)
    return out
