"""Codec training loss: the codec's own reconstruction objective (output stage 1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from omnikit.registry import param


@dataclass
class CodecReconstructionConfig:
    fit_max_cuts: int = param(
        256, "Cuts read for the codec's non-gradient fit (`fit_from_data`, e.g. k-means) before training; 0 = no fit."
    )
    segment_seconds: float = param(
        1.0, "Random crop per utterance (TiCodec: 1 s), shortened to the batch's shortest utterance: no padding."
    )


class CodecReconstructionObjective:
    """The codec's ``reconstruction_loss(wav)`` on assistant-voice audio at the codec's sample rate.

    Codecs that have a non-gradient initialisation (``fit_from_data``, e.g. a k-means codebook) are fitted by
    the stage runner before the first step, on up to ``fit_max_cuts`` training cuts. Each utterance is cropped
    to one common length (``segment_seconds`` or the shortest utterance), so no padding enters the loss; crops
    are random in training and start at 0 in validation, so dev losses are comparable.
    """

    config_class = CodecReconstructionConfig
    inputs = ("wav",)

    def __init__(self, config: CodecReconstructionConfig, **_: Any):
        self.config = config

    def __call__(self, model: torch.nn.ModuleDict, batch: dict[str, Any]) -> dict[str, Tensor]:
        codec = model["codec"]
        wav, lens = batch["wav"], batch["wav_lens"]
        n = max(1, min(int(self.config.segment_seconds * codec.sample_rate), int(lens.min())))
        if model.training:  # random crops while training; the first n samples in validation (repeatable)
            starts = [int(torch.randint(0, int(length) - n + 1, ())) for length in lens]
        else:
            starts = [0] * len(lens)
        crops = torch.stack([wav[i, s : s + n] for i, s in enumerate(starts)])
        out = codec.reconstruction_loss(crops)
        return {k: v for k, v in out.items() if torch.is_tensor(v) and v.numel() == 1}
