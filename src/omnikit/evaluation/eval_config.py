"""Which parts of the ``eval`` source ``evaluate_run`` scores (the section's schema:
``omnikit.config.sections.EvalConfig``)."""

from __future__ import annotations

from typing import Any

from omnikit.config.sections import EvalConfig


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
