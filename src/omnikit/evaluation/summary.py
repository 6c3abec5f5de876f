"""The flat ``summary`` of an evaluated run: the numbers a results table or a bar quotes, one level deep."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def world_seconds(run_dir: Path, source: str) -> float | None:
    """Wall seconds the run's speech world took to build (its ``prepared.json``), None if unknown."""
    path = Path(run_dir) / "data" / source / "prepared.json"
    if not path.is_file():
        return None
    phases = json.loads(path.read_text()).get("seconds") or {}
    return sum(float(v) for k, v in phases.items() if k in ("text", "answers", "user_audio_after_answers",
                                                              "assistant_audio", "manifests"))


def summary(metrics: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """``qa_ratio``, ``spoken_written_agreement``, ``written_accuracy``, ``n_questions``, ``ctc_cer_dev``,
    ``ctc_cer_heldout`` (held-out voices of the ASR parts), ``output_wer`` (the judge on the spoken answers),
    ``output_wer_source`` (the judge on the assistant TTS voice's rendering of the same answer texts),
    ``state_accuracy``, ``false_respond``, ``respond_to_first_pcm_p50_ms``, ``wall_minutes`` (world build +
    training + evaluation) and ``cores``."""
    qa = metrics.get("spoken_qa") or {}
    asr = metrics.get("asr") or {}
    dev = _get(asr, "asr_dev", "ctc") or _get(asr, "asr_dev", "llm") or {}
    heldout = [_get(asr, p, "ctc", "by_seen", "held-out voices") for p in asr]
    heldout = [h for h in heldout if h]
    n_held = sum(h["n"] for h in heldout)
    stages = _get(metrics, "cost", "stages") or {}
    train_s = sum(float(s.get("seconds") or 0.0) for s in stages.values() if isinstance(s, dict))
    world_s = world_seconds(run_dir, str(metrics.get("source")))
    eval_s = float(_get(metrics, "cost", "eval_seconds", "total") or 0.0)
    return {
        "qa_ratio": qa.get("spoken_to_written"),
        "spoken_written_agreement": qa.get("agreement"),
        "written_accuracy": qa.get("written_accuracy"),
        "n_questions": qa.get("n"),
        "ctc_cer_dev": dev.get("cer"),
        "ctc_cer_heldout": round(sum(h["cer"] * h["n"] for h in heldout) / n_held, 4) if n_held else None,
        "output_wer": _get(metrics, "speech_output", "judge_wer_system"),
        "output_wer_source": _get(metrics, "speech_output", "judge_wer_hibari"),
        "state_accuracy": _get(metrics, "duplex", "offline", "accuracy"),
        "false_respond": _get(metrics, "duplex", "offline", "false_respond_rate"),
        "respond_to_first_pcm_p50_ms": _get(metrics, "latency", "decision_to_first_pcm_ms", "median"),
        "wall_minutes": round(((world_s or 0.0) + train_s + eval_s) / 60.0, 1),
        "world_minutes": None if world_s is None else round(world_s / 60.0, 1),
        "train_minutes": round(train_s / 60.0, 1),
        "eval_minutes": round(eval_s / 60.0, 1),
        "cores": os.cpu_count(),
    }
