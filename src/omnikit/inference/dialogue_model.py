"""The weights of a trained system, shared by every session: built from a run directory or a recipe.

A :class:`DialogueModel` holds modules and configuration only; all per-user state lives in
:class:`~omnikit.inference.session.Session`, so one model instance serves many users.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from omnikit.audio.frontend import StreamingFrontend
from omnikit.components.vads.vad_tracker import SpeechTracker, SpeechTrackerConfig
from omnikit.config.loading import merge_recipe
from omnikit.config.sections import InferenceConfig
from omnikit.model.build import build_model, slot_args
from omnikit.model.checkpoints import WEIGHTS, is_done, merged_weights, resume_command, stage_dir
from omnikit.registry import config_from_mapping, get_registry

DEFAULT_POLICY = {"name": "state_head", "args": {}}
DEFAULT_VAD = {"name": "silero", "args": {}}
NEEDED_SLOTS = ("encoder", "adapter", "llm", "speech_decoder", "codec")


class RunDirError(FileNotFoundError):
    """A run directory that cannot serve a dialogue (missing recipe or stage checkpoint)."""


@dataclass
class DialogueModel:
    """Encoder, adapter, frozen LLM, speech decoder and codec, plus the duplex policy, VAD and settings."""

    slots: torch.nn.ModuleDict
    policy: Any
    vad: Any
    tracker: SpeechTracker
    frontend: StreamingFrontend
    settings: InferenceConfig
    recipe: DictConfig

    @property
    def encoder(self) -> Any:
        return self.slots["encoder"]

    @property
    def adapter(self) -> Any:
        return self.slots["adapter"]

    @property
    def llm(self) -> Any:
        return self.slots["llm"]

    @property
    def speech_decoder(self) -> Any:
        return self.slots["speech_decoder"]

    @property
    def codec(self) -> Any:
        return self.slots["codec"]

    @classmethod
    def from_recipe(cls, cfg: DictConfig, weights: dict[str, torch.Tensor] | None = None,
                    device: str = "cpu") -> DialogueModel:
        """Build from a recipe; ``weights`` are slot-prefixed tensors (e.g. merged stage outputs)."""
        missing = [s for s in NEEDED_SLOTS if (cfg.get("model") or {}).get(s) is None]
        if missing:
            raise ValueError(f"a dialogue needs the model slots {', '.join(missing)}, which the recipe lacks")
        slots = build_model(cfg, device=device)
        if weights:
            result = slots.load_state_dict(weights, strict=False)
            if result.unexpected_keys:
                raise ValueError(f"weights for parameters the model lacks: {result.unexpected_keys[:5]}")
        slots.eval()
        prepare = getattr(slots["llm"], "prepare_inference", None)
        if callable(prepare):  # the LLM's decode path in its inference dtype (weights and fingerprint untouched)
            prepare()
        model_cfg = cfg.get("model") or {}
        pol = model_cfg.get("duplex_policy") or OmegaConf.create(DEFAULT_POLICY)
        vad_node = model_cfg.get("vad") or OmegaConf.create(DEFAULT_VAD)
        policy = get_registry("duplex_policy").build(str(pol.name), slot_args(pol))
        vad = get_registry("vad").build(str(vad_node.name), slot_args(vad_node))
        inference = dict(OmegaConf.to_container(cfg.get("inference") or OmegaConf.create(), resolve=True))
        tracker_args = inference.pop("speech_tracker", None) or {}
        settings = InferenceConfig.from_mapping(inference)
        tracker = SpeechTracker(vad, config_from_mapping(SpeechTrackerConfig, tracker_args, "inference.speech_tracker"))
        return cls(slots, policy, vad, tracker, StreamingFrontend(), settings, cfg)

    @classmethod
    def from_run_dir(cls, run_dir: str | Path, device: str = "cpu",
                     overrides: dict[str, Any] | None = None) -> DialogueModel:
        """Load a trained run: its resolved recipe plus every scheduled stage's weights (all must be done)."""
        run_dir = Path(run_dir)
        recipe_path = run_dir / "recipe.yaml"
        if not recipe_path.is_file():
            raise RunDirError(f"{run_dir} is not a run directory: {recipe_path.name} is missing")
        cfg = OmegaConf.load(recipe_path)
        assert isinstance(cfg, DictConfig)
        if overrides:
            cfg = merge_recipe(cfg, OmegaConf.create(overrides))
        schedule = list(cfg.get("schedule") or [])
        for stage in schedule:
            if not is_done(run_dir, stage):
                raise RunDirError(
                    f"{run_dir}: stage '{stage}' has no finished checkpoint "
                    f"({stage_dir(run_dir, stage) / WEIGHTS}); train it with "
                    f"`{resume_command(run_dir, stage)}`"
                )
        return cls.from_recipe(cfg, merged_weights(run_dir, schedule), device=device)
