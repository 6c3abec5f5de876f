"""Streaming speech front-end: PCM pieces of any size in, fixed 160 ms fbank chunks out."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from omnikit.audio.cmvn import GlobalCMVN
from omnikit.audio.features import CONTEXT_SAMPLES, FRAME_SHIFT, fbank, utterance_features
from omnikit.interfaces import CHUNK_FRAMES, FEATURE_DIM


@dataclass
class FrontendState:
    """Per-session front-end state: the samples not yet turned into a chunk.

    ``buffer`` always starts with the 240-sample window overlap (zeros before the first chunk), so its size is
    bounded by ``240 + chunk samples + one pushed piece``.
    """

    buffer: Tensor = field(default_factory=lambda: torch.zeros(CONTEXT_SAMPLES))
    samples_in: int = 0  # real samples pushed so far
    chunks_out: int = 0  # chunks emitted so far


class StreamingFrontend:
    """Turns a PCM stream into encoder-ready chunks of ``chunk_frames`` new fbank frames (160 ms by default).

    Stateless itself: the per-session state is a :class:`FrontendState` from :meth:`init_state`. The encoder
    keeps its own convolution left context (see ``chunk_transformer``), so chunks carry only new frames and
    concatenated chunks equal :func:`~omnikit.audio.features.utterance_features` of the same audio.

    ``cmvn``: optional global CMVN applied to the emitted features. Leave it ``None`` when the encoder owns its
    CMVN (the built-in encoders do), so normalisation is applied exactly once.
    """

    def __init__(self, chunk_frames: int = CHUNK_FRAMES, num_mel_bins: int = FEATURE_DIM,
                 cmvn: GlobalCMVN | None = None):
        if chunk_frames <= 0:
            raise ValueError(f"chunk_frames must be positive, got {chunk_frames}")
        self.chunk_frames = chunk_frames
        self.chunk_samples = chunk_frames * FRAME_SHIFT
        self.num_mel_bins = num_mel_bins
        self.cmvn = cmvn

    def init_state(self) -> FrontendState:
        return FrontendState()

    def _features(self, samples: Tensor) -> Tensor:
        feats = fbank(samples, self.num_mel_bins)
        return self.cmvn(feats) if self.cmvn is not None else feats

    def push(self, pcm: Tensor, state: FrontendState) -> tuple[list[Tensor], FrontendState]:
        """Add a piece of float PCM in [-1, 1] (any length, 16 kHz mono); return the completed chunks, each
        ``(chunk_frames, num_mel_bins)``, and the new state. The input state is not modified."""
        pcm = pcm.detach().reshape(-1).to(torch.float32)
        buffer = torch.cat([state.buffer, pcm])
        window = CONTEXT_SAMPLES + self.chunk_samples
        chunks: list[Tensor] = []
        start = 0
        while buffer.numel() - start >= window:
            chunks.append(self._features(buffer[start : start + window]))
            start += self.chunk_samples
        new_state = FrontendState(buffer[start:].clone(), state.samples_in + pcm.numel(),
                                  state.chunks_out + len(chunks))
        return chunks, new_state

    def flush(self, state: FrontendState) -> tuple[list[Tensor], FrontendState]:
        """End of stream: zero-pad pending samples up to one full chunk and emit it (nothing if none pending).

        Same rule as :func:`utterance_features`, which pads the utterance end to a multiple of the chunk.
        Returns a fresh state, ready for the next utterance.
        """
        pending = state.buffer.numel() - CONTEXT_SAMPLES
        if pending <= 0:
            return [], self.init_state()
        padded = torch.cat([state.buffer, state.buffer.new_zeros(self.chunk_samples - pending)])
        return [self._features(padded)], self.init_state()

    def offline(self, wav: Tensor) -> Tensor:
        """Features of a whole utterance with the same rule as push + flush: ``(T, num_mel_bins)``."""
        feats = utterance_features(wav, self.chunk_frames, self.num_mel_bins)
        return self.cmvn(feats) if self.cmvn is not None else feats
