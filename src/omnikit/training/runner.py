"""The stage runner: ``run_recipe`` trains a recipe's schedule stage by stage with Lightning.

Each stage builds the model fresh, loads its ``init`` weights (``stage:<name>`` hand-offs or safetensors
files), freezes everything but its ``trainable`` set, trains its ``objectives`` on its ``data`` and writes
``stages/<stage>/trained.safetensors`` plus a ``done.json`` marker. A finished stage is skipped on re-run; an
interrupted one resumes from its last Lightning checkpoint and ends at the same step count. After every stage
the frozen LLM's fingerprint (and every other frozen parameter) must be bit-identical, or the run fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from omnikit.config.sections import BatchConfig, OptimConfig, TrainerConfig
from omnikit.data.sources import open_source
from omnikit.model.build import build_model, count_parameters
from omnikit.model.checkpoints import (
    check_run_dir,
    is_done,
    last_lightning_checkpoint,
    load_slot,
    mark_done,
    model_fingerprint,
    model_spec,
    read_done,
    resolve_init,
    resume_command,
    save_stage,
    stage_dir,
    write_run_record,
)
from omnikit.training.data import StageData, codec_fit_audio, ensure_cmvn, stage_cuts, write_json
from omnikit.training.dry_run import dry_run_report
from omnikit.training.freezing import apply_trainable, select_trainable
from omnikit.training.module import StageModule
from omnikit.training.stages import StageError, build_objectives, check_schedule, frozen_slots, stage_config

log = logging.getLogger("omnikit.training")


class StageInterrupted(KeyboardInterrupt):
    """Ctrl-C during a stage; the message says how to resume (the CLI prints it and exits 130)."""


LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric")
QUIET_WARNINGS = (
    r".*module\(s\) in eval mode.*",  # the frozen parts are in eval mode by design
    r".*isinstance\(treespec, LeafSpec\).*",  # a Lightning/torch version deprecation, not ours to fix
    r".*does not have many workers.*",  # num_workers is a recipe choice (batch.num_workers)
    r".*is smaller than the logging interval.*",
    r".*was configured so 100% of the batches.*",
)


@contextlib.contextmanager
def lightning_output(verbose: bool = False) -> Iterator[None]:
    """Quiet console: Lightning's banners (GPU/TPU lines, tips) and its known-harmless warnings are hidden, so a
    stage prints its own start and end lines and a progress bar; ``verbose`` keeps everything."""
    if verbose:
        yield
        return
    loggers = [logging.getLogger(n) for n in LIGHTNING_LOGGERS]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        with warnings.catch_warnings():
            for pattern in QUIET_WARNINGS:
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def interruptible(trainer: L.Trainer, stage: str, run_dir: Path, fn: Callable[..., Any], *args: Any,
                  **kwargs: Any) -> Any:
    """Run a Trainer entry point so that Ctrl-C raises :class:`StageInterrupted` (exit 130 in the CLI), not
    Lightning's ``sys.exit(1)``; Lightning's SIGINT-ignore during its shutdown is undone."""
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if main else None
    try:
        return fn(*args, **kwargs)
    except SystemExit as exc:
        if not trainer.interrupted:
            raise
        ckpt = last_lightning_checkpoint(run_dir, stage)
        where = f"its last checkpoint ({ckpt})" if ckpt else "the start of the stage (no checkpoint yet)"
        raise StageInterrupted(f"stage {stage} stopped at step {trainer.global_step}; "
                               f"`{resume_command(run_dir, stage)}` resumes from {where}") from exc
    finally:
        if main and handler is not None:
            signal.signal(signal.SIGINT, handler)


# ---------------------------------------------------------------------------------------------- helpers
def frozen_digest(model: torch.nn.ModuleDict) -> dict[str, str]:
    """Per slot, a digest of the parameters that do not train (the LLM's is its own fingerprint)."""
    out = {}
    for slot, module in model.items():
        if slot == "llm" and hasattr(module, "fingerprint"):
            out[slot] = module.fingerprint()
            continue
        h = hashlib.blake2b(digest_size=16)
        for name, p in sorted(module.named_parameters()):
            if not p.requires_grad and not p.is_meta:
                h.update(name.encode())
                h.update(p.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        out[slot] = h.hexdigest()
    return out


def apply_inits(model: torch.nn.ModuleDict, cfg: DictConfig, stage: dict[str, Any], run_dir: Path) -> set[str]:
    """Model-level ``init`` files first, then the stage's ``init`` hand-offs. Returns the initialised slots."""
    done: set[str] = set()
    for slot in model:
        spec = OmegaConf.select(cfg, f"model.{slot}.init", default=None)
        if spec:
            load_slot(model, slot, resolve_init(str(spec), run_dir))
            done.add(slot)
    for slot, spec in (stage.get("init") or {}).items():
        if slot not in model:
            raise StageError(f"init.{slot}: the recipe builds no '{slot}'")
        load_slot(model, slot, resolve_init(str(spec), run_dir))
        done.add(slot)
    return done


def effective_precision(precision: str, accelerator: str) -> str:
    """``bf16-*`` falls back to ``16-*`` on a CUDA device without bfloat16 (pre-Ampere), with a notice."""
    on_cuda = torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda")
    if precision.startswith("bf16") and on_cuda and not torch.cuda.is_bf16_supported():
        fallback = precision.replace("bf16", "16", 1)
        print(f"[omnikit] this GPU has no bfloat16: precision {precision} -> {fallback}")
        return fallback
    return precision


def lightning_strategy(name: str) -> Any:
    """The Trainer's strategy for a recipe's ``strategy`` string. Plain ``ddp`` finds unused parameters: a stage
    trains whole slots, and a slot part that its objectives do not reach (the encoder's CTC head in
    ``input_2_align``) would otherwise stop DDP; ``ddp_find_unused_parameters_false`` skips that search."""
    if name == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(find_unused_parameters=True)
    return name


def val_loss(results: list[dict[str, float]]) -> float | None:
    value = results[0].get("val/loss") if results else None
    return None if value is None else float(value)


class LossHistory(Callback):
    """Records the training loss of every optimizer step and the stage's wall time, for ``done.json``.

    Both travel in the Lightning checkpoint (``state_dict``), so a resumed stage reports its whole loss curve and
    the seconds spent before the interruption too, not only the part after the resume.
    """

    def __init__(self, started: float | None = None) -> None:
        self.steps: list[tuple[int, float]] = []
        self.seconds_before = 0.0  # wall time of earlier runs of this stage, up to their last checkpoint
        self._t0 = time.time() if started is None else started

    @property
    def seconds(self) -> float:
        return self.seconds_before + time.time() - self._t0

    def state_dict(self) -> dict[str, Any]:
        return {"steps": [[s, v] for s, v in self.steps], "seconds": self.seconds}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.steps = [(int(s), float(v)) for s, v in state_dict.get("steps", [])]
        self.seconds_before = float(state_dict.get("seconds", 0.0))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        skipped = isinstance(outputs, dict) and outputs.get("skipped", False)
        loss = None if skipped else outputs["loss"] if isinstance(outputs, dict) else outputs
        if trainer.world_size > 1:
            # the mean over the ranks that trained on this step (each holds a shard of the global batch)
            pair = torch.tensor([0.0 if loss is None else float(loss.detach()), 0.0 if loss is None else 1.0],
                                device=pl_module.device)
            total, count = trainer.strategy.reduce(pair, reduce_op="sum").tolist()
            if count > 0:
                self.steps.append((trainer.global_step, total / count))
        elif loss is not None:
            self.steps.append((trainer.global_step, float(loss.detach())))


def rank_stats(trainer: L.Trainer, module: StageModule) -> list[dict[str, int]]:
    """Per rank of the run (gathered to every rank): the batches and cuts it trained on in this process's life
    (after a resume: since the resume)."""
    mine = torch.tensor([trainer.global_rank, module.batches_seen, module.cuts_seen], dtype=torch.long,
                        device=module.device)
    rows = trainer.strategy.all_gather(mine).reshape(-1, 3) if trainer.world_size > 1 else mine.reshape(1, 3)
    return [{"rank": int(r[0]), "batches": int(r[1]), "cuts": int(r[2])} for r in rows.cpu()]


def say(message: str) -> None:
    """Print on the first process only (every rank of a distributed run goes through the same code)."""
    if rank_zero_only.rank == 0:
        print(message)


def keep_earlier_log(log_dir: Path) -> None:
    """Before a resume: move ``metrics.csv`` to ``metrics.part<N>.csv``, which CSVLogger would overwrite.

    The report's training curves read the parts in order and then ``metrics.csv`` (a later part wins a step both
    have), so a resumed stage keeps its whole curve.
    """
    current = Path(log_dir) / "metrics.csv"
    if current.is_file():
        n = len(list(Path(log_dir).glob("metrics.part*.csv"))) + 1
        current.rename(current.with_name(f"metrics.part{n}.csv"))


# ---------------------------------------------------------------------------------------------- a stage
def run_stage(cfg: DictConfig, run_dir: Path, name: str) -> dict[str, Any]:
    """Train one stage to its ``max_steps`` (resuming if interrupted); returns its ``done.json`` record."""
    run_dir = Path(run_dir)
    if is_done(run_dir, name):
        log.info("stage %s: already done, skipping", name)
        say(f"[omnikit] stage {name}: done already ({stage_dir(run_dir, name)}), skipping")
        return read_done(run_dir, name)
    t0 = time.time()
    stage = stage_config(cfg, name)
    schedule = list(cfg.get("schedule") or [])
    seed = int(cfg.get("seed", 0)) + (schedule.index(name) if name in schedule else 0)
    L.seed_everything(seed, workers=True, verbose=False)
    objectives = build_objectives(stage.get("objectives"))
    needs = set().union(*(set(getattr(o.objective, "inputs", ("feats",))) for o in objectives))
    trainer_cfg = TrainerConfig.from_mapping(stage.get("trainer"), f"stages.{name}.trainer")
    batch_cfg = BatchConfig.from_mapping(stage.get("batch"), f"stages.{name}.batch")
    optim_cfg = OptimConfig.from_mapping(stage.get("optim"), f"stages.{name}.optim")

    model = build_model(cfg)
    if getattr(model["llm"] if "llm" in model else None, "is_meta", False):
        raise StageError(f"model.llm is architecture-only ({cfg.model.llm.args.model}): it has no weights to train "
                         "against; set paths.llm (or model.llm.args.model) to a real model, or use --dry-run")
    initialised = apply_inits(model, cfg, stage, run_dir)

    data = stage.get("data") or {}
    if not data.get("source") or not data.get("train"):
        raise StageError(f"stages.{name}.data needs `source` and `train`")
    plugin, root = open_source(cfg, run_dir, data["source"])
    train_cuts = stage_cuts(plugin, root, data["train"])
    val_cuts = stage_cuts(plugin, root, data.get("val"))
    if "feats" in needs and "encoder" in model and "encoder" not in initialised:
        cmvn = ensure_cmvn(run_dir, train_cuts, batch_cfg.cmvn_max_cuts)
        enc_cmvn = getattr(model["encoder"], "cmvn", None)
        if enc_cmvn is not None and hasattr(enc_cmvn, "load_"):
            enc_cmvn.load_(cmvn)

    patterns = list(stage.get("trainable") or [])
    trained = select_trainable(model, patterns, frozen_slots(cfg))
    apply_trainable(model, trained)
    whole_slots = [p for p in patterns if p in model]
    resume = last_lightning_checkpoint(run_dir, name)

    wav_rate = int(model["codec"].sample_rate) if "codec" in model else 16_000
    if "codec" in whole_slots and hasattr(model["codec"], "fit_from_data") and resume is None:
        fit_cuts = max((getattr(o.objective.config, "fit_max_cuts", 0) for o in objectives), default=0)
        if fit_cuts:
            say(f"[omnikit] stage {name}: fitting the codec on {fit_cuts} cuts at most (fit_from_data)")
            model["codec"].fit_from_data(codec_fit_audio(train_cuts, wav_rate, fit_cuts))

    before = frozen_digest(model)
    n_train = count_parameters(model, trainable_only=True)
    say(f"[omnikit] stage {name}: training {n_train:,} of {count_parameters(model):,} parameters "
          f"({', '.join(patterns)}); objectives: {', '.join(o.name for o in objectives)}"
          + (f"; resuming from {resume}" if resume else ""))

    module = StageModule(model, objectives, optim_cfg, trainer_cfg.max_steps)
    datamodule = StageData(train_cuts, val_cuts, needs, wav_rate, batch_cfg, seed)
    out = stage_dir(run_dir, name)
    history = LossHistory(started=t0)
    callbacks: list[Callback] = [
        ModelCheckpoint(dirpath=out / "lightning", save_last=True, save_top_k=0,
                        every_n_train_steps=trainer_cfg.checkpoint_every_n_steps),
        LearningRateMonitor(logging_interval="step"),
        history,
    ]
    if resume is not None and rank_zero_only.rank == 0:  # the loggers write on rank 0 only
        keep_earlier_log(run_dir / "logs" / name)
    loggers = [
        CSVLogger(run_dir / "logs", name=name, version=""),
        TensorBoardLogger(run_dir / "logs", name=name, version="", default_hp_metric=False),
    ]
    trainer = L.Trainer(
        max_steps=trainer_cfg.max_steps, max_epochs=-1,
        precision=effective_precision(trainer_cfg.precision, trainer_cfg.accelerator),
        accumulate_grad_batches=trainer_cfg.accumulate_grad_batches,
        gradient_clip_val=trainer_cfg.gradient_clip_val,
        val_check_interval=trainer_cfg.val_check_interval, check_val_every_n_epoch=None,
        limit_val_batches=trainer_cfg.limit_val_batches if val_cuts is not None else 0,
        log_every_n_steps=trainer_cfg.log_every_n_steps, strategy=lightning_strategy(trainer_cfg.strategy),
        devices=trainer_cfg.devices, num_nodes=trainer_cfg.num_nodes, accelerator=trainer_cfg.accelerator,
        default_root_dir=out, logger=loggers, callbacks=callbacks, use_distributed_sampler=False,
        num_sanity_val_steps=0, enable_progress_bar=trainer_cfg.enable_progress_bar,
        enable_model_summary=False,
    )
    validate = trainer_cfg.validate_start_end and val_cuts is not None
    start_file = out / "val_start.json"
    if validate and resume is None:
        start_loss = val_loss(interruptible(trainer, name, run_dir, trainer.validate, module,
                                            datamodule=datamodule, verbose=False))
        if trainer.is_global_zero:
            write_json(start_file, start_loss)
    # Our own checkpoint files; weights_only=True all the same (no arbitrary unpickling).
    interruptible(trainer, name, run_dir, trainer.fit, module, datamodule=datamodule,
                  ckpt_path=str(resume) if resume else None, weights_only=True)
    if trainer.global_step < trainer_cfg.max_steps:
        raise StageError(f"stage {name} stopped at step {trainer.global_step} of {trainer_cfg.max_steps}; "
                         f"`{resume_command(run_dir, name)}` resumes from {out / 'lightning'}")
    val_end = (val_loss(interruptible(trainer, name, run_dir, trainer.validate, module, datamodule=datamodule,
                                      verbose=False)) if validate else None)
    ranks = rank_stats(trainer, module)
    if trainer.is_global_zero:  # only rank 0 writes the stage's weights and done.json
        info = finish_stage(cfg, run_dir, name, model, trained, patterns, whole_slots, before, {
            "steps": int(trainer.global_step), "trained_parameters": n_train,
            "objectives": [o.name for o in objectives], "val_loss_end": val_end, "resumed": resume is not None,
            "bad_audio_skipped": module.bad_audio, "seconds": round(history.seconds, 2),
            "trainer": asdict(trainer_cfg), "losses": [v for _, v in history.steps],
            "world_size": int(trainer.world_size), "ranks": ranks,
        })
    trainer.strategy.barrier("omnikit-stage-saved")  # other ranks start the next stage only after the save
    return info if trainer.is_global_zero else read_done(run_dir, name)


def finish_stage(cfg: DictConfig, run_dir: Path, name: str, model: torch.nn.ModuleDict, trained: list[str],
                 patterns: list[str], whole_slots: list[str], before: dict[str, str], record: dict[str, Any]) -> dict:
    """Rank 0: check the frozen digests, save what the stage trained, write ``done.json``."""
    out = stage_dir(run_dir, name)
    model.cpu()
    after = frozen_digest(model)
    changed = [s for s in before if before[s] != after[s]]
    if changed:
        raise StageError(f"stage {name} changed frozen weights of {', '.join(changed)} "
                         f"(LLM fingerprint {before.get('llm')} -> {after.get('llm')})")
    save_stage(run_dir, name, model, trained, whole_slots, cfg)
    losses = record.pop("losses")
    k = max(1, min(10, len(losses) // 4))
    start_file = out / "val_start.json"
    info = {
        "stage": name,
        "trained": patterns,
        "frozen_digest": after,
        "llm_fingerprint": after.get("llm"),
        "model_fingerprint": model_fingerprint(model_spec(cfg)),
        "loss_start": sum(losses[:k]) / k if losses else None,
        "loss_end": sum(losses[-k:]) / k if losses else None,
        "val_loss_start": json.loads(start_file.read_text()) if start_file.is_file() else None,
        **record,
    }
    mark_done(run_dir, name, info)
    if not record["trainer"]["keep_lightning_checkpoint"]:
        shutil.rmtree(out / "lightning", ignore_errors=True)
    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.4g}"

    val = (f"; dev loss {num(info['val_loss_start'])} -> {num(info['val_loss_end'])}"
           if info.get("val_loss_end") is not None else "")
    print(f"[omnikit] stage {name}: done in {info['seconds']:.1f} s, {info['steps']} steps, "
          f"loss {num(info['loss_start'])} -> {num(info['loss_end'])}{val}")
    return info


# ---------------------------------------------------------------------------------------------- recipe
def run_recipe(cfg: DictConfig, run_dir: Path, stage: str | None = None, dry_run: bool = False,
               verbose: bool = False) -> None:
    """Train the recipe's schedule (or one ``stage``) into ``run_dir``; ``dry_run`` builds on the meta device and
    prints the parameter table instead. A run directory whose stages were trained with a different model is
    refused (``RunDirConflict``); ``run.json`` records where the run lives and its model. ``verbose`` keeps
    Lightning's own console output. Training only: ``omnikit run`` evaluates afterwards when the recipe has an
    ``eval`` section (the evaluation sits above training, not inside it)."""
    schedule = list(cfg.get("schedule") or [])
    if stage is not None and stage not in schedule:
        raise StageError(f"stage '{stage}' is not in the schedule ({', '.join(schedule)})")
    stages = [stage] if stage else schedule
    check_schedule(cfg, schedule)
    if dry_run:
        print(dry_run_report(cfg, schedule))
        return
    check_run_dir(cfg, Path(run_dir))
    write_run_record(cfg, Path(run_dir))
    with lightning_output(verbose):
        for name in stages:
            run_stage(cfg, Path(run_dir), name)
