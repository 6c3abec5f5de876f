"""Batches from lhotse cuts: audio loading with per-file errors, fbank features, codec-rate audio, labels.

The dataset follows lhotse's map-style convention: a sampler yields a ``CutSet`` per batch and
``SpeechBatchDataset.__getitem__`` turns it into a dict of tensors:

* ``feats`` ``(B, T, 80)`` / ``feat_lens``: Kaldi fbank of the 16 kHz user audio (``"feats"`` needed);
* ``wav`` ``(B, S)`` / ``wav_lens``: audio resampled to ``wav_rate`` (``"wav"`` needed, e.g. codec training);
* ``text``: ``supervisions[0].text``; ``answer``: ``custom["answer"]`` or None; ``question``:
  ``custom["question"]`` or None (TTS cuts of answers may carry the question that led to them);
* ``state_labels`` ``(B, C)``: ``custom["state_labels"]`` padded with -100, or None when no cut has labels;
* ``kind``: ``custom["kind"]`` per cut (``fact``, ``open``, ``plain``, ...) or None;
* ``cut_ids``; ``n_bad``: cuts dropped for unreadable audio (``on_bad_audio: skip``).

Features are not normalised here: the encoder owns its global CMVN (computed by the stage runner).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import torch
from lhotse import CutSet
from lhotse.cut import Cut
from torch import Tensor

from omnikit.audio.features import utterance_features
from omnikit.data.augment import Augmenter
from omnikit.interfaces import SAMPLE_RATE

log = logging.getLogger(__name__)
IGNORE = -100


class BadAudioError(RuntimeError):
    """A cut whose audio cannot be read; the message names the file."""


def cut_source(cut: Cut) -> str:
    """The audio file (or other source) behind a cut, for error messages."""
    try:
        return ", ".join(str(s.source) for s in cut.recording.sources)
    except AttributeError:
        return f"<cut {cut.id}>"


def load_cut_audio(cut: Cut, sample_rate: int) -> Tensor:
    """Mono float32 ``(samples,)`` at ``sample_rate``; raises :class:`BadAudioError` naming the file."""
    try:
        if cut.sampling_rate != sample_rate:
            cut = cut.resample(sample_rate)
        audio = torch.from_numpy(cut.load_audio()).float().mean(0)
    except Exception as err:  # lhotse/soundfile raise many types for missing or corrupt files
        raise BadAudioError(f"cut {cut.id}: cannot read audio {cut_source(cut)} ({type(err).__name__}: {err})") from err
    if audio.numel() == 0 or not torch.isfinite(audio).all():
        raise BadAudioError(f"cut {cut.id}: audio {cut_source(cut)} is empty or has NaN/inf samples")
    return audio


def pad_1d(seqs: list[Tensor], value: float = 0.0) -> tuple[Tensor, Tensor]:
    lens = torch.tensor([s.shape[0] for s in seqs], dtype=torch.long)
    out = seqs[0].new_full((len(seqs), int(lens.max()), *seqs[0].shape[1:]), value)
    for i, s in enumerate(seqs):
        out[i, : s.shape[0]] = s
    return out, lens


class SpeechBatchDataset(torch.utils.data.Dataset):
    """Map-style lhotse dataset: ``CutSet -> batch dict`` (see the module docstring)."""

    def __init__(
        self,
        needs: Iterable[str],
        wav_rate: int = SAMPLE_RATE,
        augment: Augmenter | None = None,
        on_bad_audio: str = "fail",
        cache: bool = False,
    ):
        if on_bad_audio not in ("fail", "skip"):
            raise ValueError(f"on_bad_audio must be 'fail' or 'skip', got {on_bad_audio!r}")
        self.needs = set(needs)
        self.wav_rate = wav_rate
        self.augment = augment if augment is not None and augment.active else None
        self.on_bad_audio = on_bad_audio
        self.cache: dict[tuple[str, str], Tensor] | None = {} if cache else None

    def _cached(self, key: tuple[str, str], make: Any) -> Tensor:
        """Memoise decoded audio / features per cut (small data sets only: everything stays in memory)."""
        if self.cache is None:
            return make()
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]

    def _example(self, cut: Cut) -> dict[str, Any]:
        ex: dict[str, Any] = {"id": cut.id}
        sup = cut.supervisions[0] if cut.supervisions else None
        ex["text"] = sup.text if sup is not None and sup.text is not None else ""
        custom = cut.custom or {}
        ex["answer"] = custom.get("answer")
        ex["question"] = custom.get("question")
        ex["state_labels"] = custom.get("state_labels")
        ex["kind"] = custom.get("kind")
        if "feats" in self.needs:
            if self.augment is not None and self.augment.changes_waveform:
                audio = self._cached((cut.id, "pcm16k"), lambda: load_cut_audio(cut, SAMPLE_RATE))
                feats = utterance_features(self.augment.waveform(audio))
            else:
                feats = self._cached(
                    (cut.id, "fbank"), lambda: utterance_features(load_cut_audio(cut, SAMPLE_RATE))
                )
            ex["feats"] = self.augment.spec(feats) if self.augment is not None else feats
        if "wav" in self.needs:
            ex["wav"] = self._cached((cut.id, "wav"), lambda: load_cut_audio(cut, self.wav_rate))
        return ex

    def __getitem__(self, cuts: CutSet) -> dict[str, Any] | None:
        examples, n_bad = [], 0
        for cut in cuts:
            try:
                examples.append(self._example(cut))
            except BadAudioError as err:
                if self.on_bad_audio == "fail":
                    raise
                n_bad += 1
                log.warning("skipping bad audio: %s", err)
        if not examples:
            return {"n_bad": n_bad, "empty": True}
        return collate(examples, n_bad)


def collate(examples: list[dict[str, Any]], n_bad: int = 0) -> dict[str, Any]:
    batch: dict[str, Any] = {
        "cut_ids": [e["id"] for e in examples],
        "text": [e["text"] for e in examples],
        "answer": [e["answer"] for e in examples],
        "question": [e["question"] for e in examples],
        "kind": [e["kind"] for e in examples],
        "n_bad": n_bad,
    }
    if "feats" in examples[0]:
        batch["feats"], batch["feat_lens"] = pad_1d([e["feats"] for e in examples])
    if "wav" in examples[0]:
        batch["wav"], batch["wav_lens"] = pad_1d([e["wav"] for e in examples])
    labels = [e["state_labels"] for e in examples]
    if any(y is not None for y in labels):
        seqs = [torch.tensor(y if y is not None else [IGNORE], dtype=torch.long) for y in labels]
        batch["state_labels"], _ = pad_1d(seqs, IGNORE)
    else:
        batch["state_labels"] = None
    return batch
