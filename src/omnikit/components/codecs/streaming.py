"""Windowed streaming decoding of codec tokens, shared by every codec.

Tokens arrive one by one (or in bursts) from the speech decoder. The decoder holds them in a buffer, and
whenever the buffer holds ``left + chunk + right`` tokens it decodes that whole window offline, drops the
``left`` and ``right`` context tokens' worth of samples at the edges and emits the ``chunk`` tokens of new
audio in between. The first window has no left context and a small ``first_chunk`` (low time to first
audio); later windows use ``chunk`` and ``context`` tokens on both sides. ``flush`` decodes what is left with
left context only. The concatenated stream has exactly ``len(tokens) * samples_per_token`` samples, like
offline decoding.

How close the stream is to offline decoding depends on the codec's decoder:

* a decoder whose receptive field fits inside ``context`` tokens on each side (the convolutional
  ``waveform_vq`` decoder, the ``mel_vq`` learned spectrogram decoder) gives the offline result up to float
  rounding;
* Griffin-Lim estimates phase over the whole window, so each window's phase differs from the offline run's.
  The stream then matches offline decoding in the magnitude (log-mel) domain, not sample by sample; see
  ``log_mel_distance`` and the codec tests for the tolerance.

Streaming state lives in this object, one per output stream (per session), never in the codec module.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

DecodeFn = Callable[[Tensor], Tensor]
"""(N,) long tokens -> (N * samples_per_token,) float PCM."""


class WindowedStreamingDecoder:
    """Streams PCM out of a token stream by decoding overlapping token windows (see the module doc)."""

    def __init__(
        self,
        decode_fn: DecodeFn,
        samples_per_token: int,
        first_chunk: int = 20,
        chunk: int = 40,
        context: int = 10,
    ) -> None:
        if first_chunk < 1 or chunk < 1 or context < 0:
            raise ValueError("first_chunk and chunk must be >= 1 and context >= 0")
        self.decode_fn = decode_fn
        self.samples_per_token = int(samples_per_token)
        self.first_chunk = int(first_chunk)
        self.chunk = int(chunk)
        self.context = int(context)
        self._buffer: list[int] = []
        self._left = 0  # tokens at the head of the buffer already emitted (left context)
        self._emitted_tokens = 0

    @property
    def emitted_tokens(self) -> int:
        """Tokens whose audio has been returned so far."""
        return self._emitted_tokens

    def _next_chunk(self) -> int:
        return self.first_chunk if self._emitted_tokens == 0 else self.chunk

    def _decode_window(self, n_new: int, right: int) -> Tensor:
        window = torch.tensor(self._buffer[: self._left + n_new + right], dtype=torch.long)
        pcm = self.decode_fn(window).reshape(-1)
        spt = self.samples_per_token
        out = pcm[self._left * spt : (self._left + n_new) * spt]
        # Keep the last ``context`` emitted tokens as left context, and the right context as future tokens.
        keep_from = max(0, self._left + n_new - self.context)
        self._buffer = self._buffer[keep_from:]
        self._left = self._left + n_new - keep_from
        self._emitted_tokens += n_new
        return out

    def push(self, tokens: Tensor) -> Tensor:
        """Add tokens ``(N,)``; return the PCM of every window that became complete (maybe empty)."""
        self._buffer.extend(int(t) for t in tokens.reshape(-1).tolist())
        outs: list[Tensor] = []
        while len(self._buffer) - self._left >= self._next_chunk() + self.context:
            outs.append(self._decode_window(self._next_chunk(), self.context))
        return torch.cat(outs) if outs else torch.zeros(0)

    def flush(self) -> Tensor:
        """Decode the remaining tokens (left context only) and reset for a new stream."""
        n_new = len(self._buffer) - self._left
        out = self._decode_window(n_new, 0) if n_new > 0 else torch.zeros(0)
        self._buffer, self._left, self._emitted_tokens = [], 0, 0
        return out


def stream_decode(decoder: WindowedStreamingDecoder, tokens: Tensor, step: int = 1) -> list[Tensor]:
    """Feed ``tokens`` (N,) ``step`` at a time and return every non-empty PCM piece, flush included."""
    pieces: list[Tensor] = []
    for i in range(0, tokens.numel(), step):
        out = decoder.push(tokens[i : i + step])
        if out.numel():
            pieces.append(out)
    last = decoder.flush()
    if last.numel():
        pieces.append(last)
    return pieces


def log_mel_distance(a: Tensor, b: Tensor, sample_rate: int, n_mels: int = 80, eps: float = 1e-5) -> float:
    """Mean absolute difference of natural-log mel magnitudes (25 ms windows, 10 ms hop) of two signals.

    Used to compare a Griffin-Lim stream with offline decoding, where phases differ but magnitudes should not.
    """
    import torchaudio

    n_fft = int(round(0.025 * sample_rate))
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate, n_fft=n_fft, hop_length=n_fft * 2 // 5, n_mels=min(n_mels, n_fft // 4), power=1.0
    )
    n = min(a.numel(), b.numel())
    la = torch.log(mel(a.reshape(-1)[:n].float()) + eps)
    lb = torch.log(mel(b.reshape(-1)[:n].float()) + eps)
    return float((la - lb).abs().mean())
