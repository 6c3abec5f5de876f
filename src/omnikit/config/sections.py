"""The schemas of the recipe's plain sections: the dataclasses that the stage options ``optim``, ``trainer``
and ``batch``, and the sections ``inference`` and ``eval`` are read into.

They live here, below training, inference and evaluation, so that ``omnikit validate`` checks every section
against the same classes the code runs with, before anything starts (``omnikit.config.validation``). Two
sub-sections keep their schema beside the code that uses it, one layer down: ``batch.augment``
(:class:`omnikit.data.augment.AugmentConfig`) and ``inference.speech_tracker``
(:class:`omnikit.components.vads.vad_tracker.SpeechTrackerConfig`); they are imported lazily (torch).

Each ``from_mapping`` parses with :func:`omnikit.registry.config_from_mapping` (unknown keys named, near
misses suggested); ``path`` is the config path the error names. Components' own ``args`` are checked against
their ``config_class`` through the registry instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from omnikit.registry.fields import config_from_mapping, param

if TYPE_CHECKING:
    from omnikit.components.llms.sampling import Sampling

DECAYS = ("constant", "cosine", "inverse_sqrt")


# ---------------------------------------------------------------------------------------------- stage options
@dataclass
class OptimConfig:
    """Stage option ``optim`` (AdamW with a warm-up and a decay of the learning rate)."""

    lr: float = param(1e-4, "Peak learning rate.")
    weight_decay: float = param(0.01, "AdamW weight decay (not applied to biases and norms).")
    betas: list[float] = param(doc="AdamW betas.", factory=lambda: [0.9, 0.99])
    eps: float = param(1e-6, "AdamW epsilon.")
    warmup_steps: int = param(0, "Linear warm-up steps.")
    decay: Literal["constant", "cosine", "inverse_sqrt"] = param(
        "constant", "After warm-up: constant | cosine | inverse_sqrt (Noam/WeNet warmuplr).")
    min_lr_ratio: float = param(0.0, "Cosine floor as a fraction of lr.")

    @classmethod
    def from_mapping(cls, d: Any, path: str = "optim") -> OptimConfig:
        cfg = config_from_mapping(cls, d, path)
        if cfg.decay not in DECAYS:
            raise ValueError(f"{path}.decay must be constant, cosine or inverse_sqrt, got {cfg.decay!r}")
        return cfg


@dataclass
class TrainerConfig:
    """Stage option ``trainer`` (passed to ``lightning.Trainer``; strategies scale out unchanged)."""

    max_steps: int = param(1000, "Optimizer steps of the stage.")
    precision: str = param("32-true", "Lightning precision; bf16-mixed on GPUs that support it.")
    accumulate_grad_batches: int = param(1, "Batches per optimizer step.")
    gradient_clip_val: float | None = param(None, "Gradient norm clip (None: off).")
    val_check_interval: int | None = param(
        None, "Training batches between validations; None: only at the end.")
    limit_val_batches: int | float = param(1.0, "Validation batches (int) or fraction of them (float).")
    log_every_n_steps: int = param(50, "Steps between logged training metrics.")
    strategy: str = param("auto", "Lightning strategy: ddp, fsdp, deepspeed_stage_2, ...")
    devices: Any = param("auto", "Lightning devices (a count, a list, or auto).")
    num_nodes: int = param(1, "Nodes of a multi-node run.")
    accelerator: str = param("auto", "Lightning accelerator: cpu, gpu, auto.")
    checkpoint_every_n_steps: int = param(200, "Steps between Lightning checkpoints (for resuming).")
    keep_lightning_checkpoint: bool = param(
        False, "Keep stages/<stage>/lightning after the stage finishes.")
    validate_start_end: bool = param(
        True, "Validate before the first and after the last step (done.json: val_loss_*).")
    enable_progress_bar: bool = param(True, "Show Lightning's progress bar.")

    @classmethod
    def from_mapping(cls, d: Any, path: str = "trainer") -> TrainerConfig:
        return config_from_mapping(cls, d, path)


@dataclass
class BatchConfig:
    """Stage option ``batch``."""

    max_duration: float = param(60.0, "Seconds of audio per batch (dynamic batch size).")
    val_max_duration: float | None = param(None, "Seconds of audio per validation batch; None: max_duration.")
    num_workers: int = param(0, "Data-loader worker processes.")
    num_buckets: int = param(10, "Duration buckets of the DynamicBucketingSampler.")
    on_bad_audio: Literal["fail", "skip"] = param(
        "fail", "fail | skip (skipped cuts are counted and logged).")
    augment: dict[str, Any] = param(doc="Training augmentation: see omnikit.data.augment.AugmentConfig.", factory=dict)
    cmvn_max_cuts: int = param(500, "Training cuts read to compute the global CMVN.")
    max_val_cuts: int = param(0, "Dev cuts validated at most (0: all).")
    cache_audio: bool = param(
        False, "Keep decoded audio/features in memory (small data sets, e.g. smoke tests).")

    @classmethod
    def from_mapping(cls, d: Any, path: str = "batch") -> BatchConfig:
        from omnikit.data.augment import (
            AugmentConfig,  # torchaudio: only when a stage reads its batch options
        )

        cfg = config_from_mapping(cls, d, path)
        AugmentConfig.from_mapping(cfg.augment, f"{path}.augment")  # its keys too, before any data loads
        return cfg


STAGE_OPTIONS: dict[str, type] = {"optim": OptimConfig, "trainer": TrainerConfig, "batch": BatchConfig}
"""Stage key -> the schema of that stage option (``batch.augment`` is nested in ``batch``)."""


# ---------------------------------------------------------------------------------------------- inference
@dataclass
class InferenceConfig:
    """Recipe section ``inference``: how a session samples text and speech (defaults: the Freeze-Omni
    server's, spec §8). Its ``speech_tracker`` sub-section is the VAD tracker's ``SpeechTrackerConfig``."""

    temperature: float = param(0.7, "LLM sampling temperature.")
    top_k: int = param(5, "LLM top-k (0 = off).")
    top_p: float = param(0.8, "LLM top-p (1.0 = off).")
    greedy: bool = param(False, "Greedy LLM decoding (overrides temperature/top-k/top-p; used by evaluation).")
    max_answer_tokens: int = param(128, "Cap on an answer's LLM tokens.")
    system_prompt: str | None = param(None, "System prompt; None: the LLM slot's default.")
    decoder_top_k: int = param(2, "Speech decoder top-k over codec tokens.")
    decoder_repetition_penalty: float = param(1.0, "Speech decoder repetition penalty (1.0 = off).")
    decoder_max_tokens: int = param(1000, "Cap on codec tokens per text segment.")
    first_chunk: int = param(20, "Codec tokens in the first speech chunk of a segment (small: fast first PCM).")
    chunk: int = param(40, "Codec tokens per later speech chunk.")
    codec_context: int = param(10, "Left/right codec-token context of the streaming codec decoder.")
    chunk_ms: float = param(160.0, "Input chunk (ms); the encoder consumes 16 fbank frames per 160 ms.")
    seed: int = param(0, "Seed of the session's sampling generator.")

    @classmethod
    def from_mapping(cls, values: Any, path: str = "inference") -> InferenceConfig:
        return config_from_mapping(cls, values, path)

    def sampling(self) -> Sampling:
        from omnikit.components.llms.sampling import Sampling  # torch: only when a session samples

        if self.greedy:
            return Sampling(greedy=True)
        return Sampling(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p)


# ---------------------------------------------------------------------------------------------- eval
@dataclass
class EvalConfig:
    """Recipe section ``eval``: options of ``evaluate_run`` (every field optional)."""

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
    def from_mapping(cls, values: Any, path: str = "eval") -> EvalConfig:
        return config_from_mapping(cls, values, path)
