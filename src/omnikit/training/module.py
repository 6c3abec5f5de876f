"""The one generic LightningModule: a model of slots, a stage's objectives, its trainable set and optimizer."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from omnikit.config.sections import OptimConfig
from omnikit.training.freezing import check_groups, param_groups, set_train_mode
from omnikit.training.stages import ObjectiveSpec


def lr_factor(step: int, cfg: OptimConfig, max_steps: int) -> float:
    """Multiplier of ``lr`` at optimizer step ``step``: linear warm-up, then the chosen decay."""
    w = cfg.warmup_steps
    if w > 0 and step < w:
        return (step + 1) / w
    if cfg.decay == "cosine":
        span = max(1, max_steps - w)
        progress = min(1.0, (step - w) / span)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.decay == "inverse_sqrt":
        return math.sqrt(max(w, 1) / max(step + 1, 1))
    return 1.0


class StageModule(L.LightningModule):
    """Runs a stage: weighted sum of objectives over a ``ModuleDict`` of slots; only the trainable set learns.

    Logged per step: ``train/loss``, ``train/<objective>/<metric>``, ``lr``; per validation: the same under
    ``val/``, averaged over the ranks of a distributed run. Frozen sub-modules stay in eval mode whenever the
    module is put in train mode.

    Under a multi-process strategy a batch with nothing to learn (all audio bad, no targets) still takes part in
    the step with a zero loss, so the ranks' gradient all-reduces stay in step; ``batches_seen``/``cuts_seen``
    count what this rank actually trained on.
    """

    def __init__(self, model: nn.ModuleDict, objectives: list[ObjectiveSpec], optim: OptimConfig, max_steps: int):
        super().__init__()
        self.model = model
        self.objectives = objectives
        self.optim = optim
        self.max_steps = max_steps
        self.bad_audio = 0
        self.batches_seen = 0  # batches this process trained on (since it started or resumed)
        self.cuts_seen = 0

    def world_size(self) -> int:
        """Processes of the run (1 without a Trainer or a distributed strategy)."""
        trainer = self._trainer
        return int(trainer.world_size) if trainer is not None else 1

    def train(self, mode: bool = True) -> StageModule:
        set_train_mode(self.model, mode)
        self.training = mode
        return self

    def _loss(self, batch: dict[str, Any], split: str) -> Tensor | None:
        self.bad_audio += int(batch.get("n_bad", 0))
        if batch.get("empty"):
            return None
        batch["_cache"] = {}
        bsz = len(batch["cut_ids"])
        sync = split == "val"  # validation metrics: the mean over ranks (once per epoch, not per step)
        total: Tensor | None = None
        for spec in self.objectives:
            out = spec.objective(self.model, batch)
            for key, value in out.items():
                self.log(f"{split}/{spec.name}/{key}", value.detach().float(), batch_size=bsz, sync_dist=sync,
                         prog_bar=(key == "loss" and split == "train" and len(self.objectives) > 1))
            term = spec.weight * out["loss"]
            total = term if total is None else total + term
        batch.pop("_cache", None)
        if total is not None:
            self.log(f"{split}/loss", total.detach().float(), batch_size=bsz, prog_bar=True, sync_dist=sync)
        if self.bad_audio:
            self.log(f"{split}/bad_audio_skipped", float(self.bad_audio), batch_size=bsz)
        return total

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor | dict[str, Any] | None:
        loss = self._loss(batch, "train")
        if loss is not None and loss.requires_grad:
            self.batches_seen += 1
            self.cuts_seen += len(batch["cut_ids"])
            return loss
        if self.world_size() > 1:  # the other ranks step: take part with a zero gradient
            zero = sum((p.sum() * 0.0 for p in self.model.parameters() if p.requires_grad),
                       torch.zeros((), device=self.device))
            return {"loss": zero, "skipped": True}
        return None  # nothing to learn from this batch (all audio bad, or no targets)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._loss(batch, "val")

    def configure_optimizers(self) -> Any:
        groups = param_groups(self.model, self.optim.weight_decay)
        check_groups(self.model, groups)
        if not groups:
            raise RuntimeError("this stage selects no trainable parameters")
        opt = torch.optim.AdamW(groups, lr=self.optim.lr, betas=tuple(self.optim.betas), eps=self.optim.eps)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, self.optim, self.max_steps))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
