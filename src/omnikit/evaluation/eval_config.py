"""The recipe's ``eval`` section: which data source and parts ``evaluate_run`` scores, and how much of them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omnikit.registry import param
from omnikit.registry.fields import config_from_mapping


@dataclass
class EvalConfig:
    """Options of ``evaluate_run`` (recipe section ``eval``; every field optional)."""

    source: str | None = param(None, "Data source (a key under `data`); None: the one the scheduled stages train on most.")
    asr_parts: list[str] | None = param(None, "Parts for ASR; None: those of asr_dev, asr_test the source has.")
    dialogue_part: str | None = param(None, "Part for spoken QA; None: dialogue_test, else dialogue_dev.")
    duplex_part: str | None = param(None, "Part for duplex metrics; None: duplex_test, else duplex_dev.")
    limit: int | None = param(None, "Cuts per part at most (None: all); `evaluate_run(limit=...)` overrides it.")
    transcript_tokens: int = param(64, "Longest LLM transcript (tokens) in the stage-2 ASR probe.")
    judge: bool = param(True, "Score the spoken answers' intelligibility with an ASR judge (if installed).")
    judge_engine: str = param("whisper", "ASR judge: 'whisper' (tiny.en, any voice) or 'pocketsphinx' (natural voices).")
    hibari_reference: bool = param(True, "Also judge hibari's own rendering of each answer text (if installed).")
    demo: bool = param(True, "Write demo/question.wav, demo/answer.wav and demo/transcript.txt.")

    @classmethod
    def from_mapping(cls, values: Any) -> EvalConfig:
        return config_from_mapping(cls, values, "eval")


def pick_parts(cfg: EvalConfig, available: list[str]) -> dict[str, Any]:
    """Resolve the parts to score against the dataset's ``parts`` (test parts preferred, dev as fallback)."""
    def first(*names: str) -> str | None:
        return next((n for n in names if n in available), None)

    asr = cfg.asr_parts if cfg.asr_parts is not None else [p for p in ("asr_dev", "asr_test") if p in available]
    return {
        "asr": list(asr),
        "dialogue": cfg.dialogue_part or first("dialogue_test", "dialogue_dev"),
        "duplex": cfg.duplex_part or first("duplex_test", "duplex_dev"),
    }
