"""The stage's data: dataset plugins -> CutSets -> lhotse samplers -> batches; global CMVN of the features."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lhotse import CutSet
from lhotse.dataset import DynamicBucketingSampler, SimpleCutSampler
from omegaconf import DictConfig, OmegaConf

from omnikit.audio.cmvn import GlobalCMVN
from omnikit.audio.features import utterance_features
from omnikit.data.augment import AugmentConfig, Augmenter
from omnikit.data.collate import BadAudioError, SpeechBatchDataset, load_cut_audio
from omnikit.interfaces import SAMPLE_RATE
from omnikit.registry import get_registry

log = logging.getLogger(__name__)


@dataclass
class BatchConfig:
    """Stage option ``batch``."""

    max_duration: float = 60.0  # seconds of audio per batch (dynamic batch size)
    val_max_duration: float | None = None  # default: max_duration
    num_workers: int = 0
    num_buckets: int = 10  # duration buckets of the DynamicBucketingSampler
    on_bad_audio: str = "fail"  # fail | skip (skipped cuts are counted and logged)
    augment: dict[str, Any] = field(default_factory=dict)  # see omnikit.data.augment.AugmentConfig
    cmvn_max_cuts: int = 500  # training cuts read to compute the global CMVN
    max_val_cuts: int = 0  # 0 = all dev cuts
    cache_audio: bool = False  # keep decoded audio/features in memory (small data sets, e.g. smoke tests)

    @classmethod
    def from_mapping(cls, d: dict[str, Any] | None) -> BatchConfig:
        unknown = set(d or {}) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"batch: unknown keys {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**(d or {}))


def data_root(cfg: DictConfig, run_dir: Path, source: str) -> Path:
    """Where a data source lives: ``paths.data/<source>`` when the recipe sets it, else ``run_dir/data/<source>``."""
    base = OmegaConf.select(cfg, "paths.data", default=None)
    return (Path(base) if base else Path(run_dir) / "data") / source


def open_source(cfg: DictConfig, run_dir: Path, source: str) -> tuple[Any, Path]:
    """Build a data source's dataset plugin and ``prepare`` it (idempotent)."""
    node = cfg.data[source]
    args = OmegaConf.to_container(node.get("args") or {}, resolve=True)
    plugin = get_registry("dataset").build(str(node.name), args)
    root = data_root(cfg, run_dir, source)
    plugin.prepare(root)
    return plugin, root


def stage_cuts(plugin: Any, root: Path, parts: Any) -> CutSet | None:
    if parts is None:
        return None
    parts = [parts] if isinstance(parts, str) else list(parts)
    sets = [plugin.cuts(p, root) for p in parts]
    out = sets[0]
    for s in sets[1:]:
        out = out + s
    return out


def ensure_cmvn(run_dir: Path, cuts: CutSet, max_cuts: int) -> GlobalCMVN:
    """The run's global CMVN (``run_dir/cmvn.json``), computed once from training features."""
    path = Path(run_dir) / "cmvn.json"
    if path.is_file():
        return GlobalCMVN.load_json(path)

    def feats():
        for i, cut in enumerate(cuts):
            if i >= max_cuts:
                break
            try:
                yield utterance_features(load_cut_audio(cut, SAMPLE_RATE))
            except BadAudioError as err:
                log.warning("CMVN: skipping %s", err)

    cmvn = GlobalCMVN.compute(feats())
    cmvn.save_json(path)
    return cmvn


def codec_fit_audio(cuts: CutSet, sample_rate: int, max_cuts: int) -> list[torch.Tensor]:
    """Audio of up to ``max_cuts`` training cuts at the codec rate, for ``codec.fit_from_data``."""
    out = []
    for i, cut in enumerate(cuts):
        if i >= max_cuts:
            break
        out.append(load_cut_audio(cut, sample_rate))
    return out


class StageData(L.LightningDataModule):
    """Dynamic bucketing by duration for training, sequential batches for validation.

    Samplers are created inside ``*_dataloader()`` (after a distributed strategy has started), so lhotse
    shards the cuts across ranks itself; the Trainer runs with ``use_distributed_sampler=False``.
    """

    def __init__(self, train: CutSet, val: CutSet | None, needs: set[str], wav_rate: int, batch: BatchConfig, seed: int):
        super().__init__()
        self.train_cuts, self.val_cuts = train, val
        self.batch, self.seed = batch, seed
        augment = Augmenter(AugmentConfig.from_mapping(batch.augment), seed=seed)
        self.train_set = SpeechBatchDataset(needs, wav_rate, augment, batch.on_bad_audio, batch.cache_audio)
        self.val_set = SpeechBatchDataset(needs, wav_rate, None, batch.on_bad_audio, batch.cache_audio)

    def _loader(self, dataset: SpeechBatchDataset, sampler: Any) -> torch.utils.data.DataLoader:
        nw = self.batch.num_workers
        return torch.utils.data.DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=nw,
                                           persistent_workers=nw > 0)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        sampler = DynamicBucketingSampler(
            self.train_cuts, max_duration=self.batch.max_duration, shuffle=True, num_buckets=self.batch.num_buckets,
            seed=self.seed, drop_last=False,
        )
        return self._loader(self.train_set, sampler)

    def val_dataloader(self) -> torch.utils.data.DataLoader | list:
        if self.val_cuts is None:
            return []
        cuts = self.val_cuts.subset(first=self.batch.max_val_cuts) if self.batch.max_val_cuts else self.val_cuts
        sampler = SimpleCutSampler(cuts, max_duration=self.batch.val_max_duration or self.batch.max_duration)
        return self._loader(self.val_set, sampler)


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2))
