"""The stage's data: dataset plugins (``omnikit.data.sources``) -> CutSets -> lhotse samplers -> batches;
global CMVN of the features."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lhotse import CutSet
from lhotse.dataset import DynamicBucketingSampler, SimpleCutSampler

from omnikit.audio.cmvn import GlobalCMVN
from omnikit.audio.features import utterance_features
from omnikit.config.sections import BatchConfig
from omnikit.data.augment import AugmentConfig, Augmenter
from omnikit.data.collate import BadAudioError, SpeechBatchDataset, load_cut_audio
from omnikit.interfaces import SAMPLE_RATE

log = logging.getLogger(__name__)


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
    # written whole or not at all: every process of a distributed run that starts together computes it
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    cmvn.save_json(tmp)
    tmp.replace(path)
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
