"""A recipe's stages read as plain data: one stage's mapping, its objectives, the frozen slots and the schedule's
``init`` hand-offs. Shared by the runner and the dry run (which build nothing else from each other)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from omnikit.model.checkpoints import STAGE_PREFIX
from omnikit.registry import get_registry


class StageError(RuntimeError):
    """A stage cannot run or finished wrongly (one clear line for the CLI)."""


@dataclass
class ObjectiveSpec:
    """One of a stage's objectives: its registry name, its loss weight and the built objective."""

    name: str
    weight: float
    objective: Any


def stage_config(cfg: DictConfig, name: str) -> dict[str, Any]:
    if name not in (cfg.get("stages") or {}):
        raise StageError(f"no stage '{name}' under `stages` (stages: {', '.join(cfg.get('stages') or {})})")
    return OmegaConf.to_container(cfg.stages[name], resolve=True) or {}


def build_objectives(spec: dict[str, Any] | None) -> list[ObjectiveSpec]:
    out = []
    for name, value in (spec or {}).items():
        if isinstance(value, dict):
            weight, args = float(value.get("weight", 1.0)), value.get("args") or {}
        else:
            weight, args = float(value), {}
        out.append(ObjectiveSpec(name, weight, get_registry("objective").build(name, args)))
    if not out:
        raise StageError("a stage needs at least one objective")
    return out


def frozen_slots(cfg: DictConfig) -> list[str]:
    model = cfg.get("model") or {}
    return [s for s in model if model[s] is not None and model[s].get("trainable", True) is False]


def check_schedule(cfg: DictConfig, stages: list[str]) -> None:
    """``init: stage:<x>`` must name a stage that runs earlier in the schedule."""
    schedule = list(cfg.get("schedule") or [])
    problems = []
    for name in stages:
        for slot, spec in (stage_config(cfg, name).get("init") or {}).items():
            if isinstance(spec, str) and spec.startswith(STAGE_PREFIX):
                src = spec[len(STAGE_PREFIX):]
                if src not in schedule or (name in schedule and schedule.index(src) >= schedule.index(name)):
                    problems.append(f"stages.{name}.init.{slot}: '{src}' is not an earlier stage of the schedule")
    if problems:
        raise StageError("; ".join(problems))
