"""Streaming speech-segment tracking on top of any VAD: start (with pre-roll), continue, end.

This is the endpointing logic of the Freeze-Omni server (spec §6.3, silero ``VADIterator`` semantics), kept
apart from the VAD model so it works with every ``vad`` plugin. Audio arrives in chunks (160 ms = 2560
samples at 16 kHz by default); each chunk is scored window by window and yields one or more
:class:`SpeechEvent`:

* ``SILENCE``: not in speech; the chunk goes into the pre-roll ring.
* ``START``: a window reached ``threshold``. ``chunks`` holds up to ``pre_roll_chunks`` earlier chunks and the
  current one, oldest first: feed all of them to the encoder (the words' onsets are often below threshold).
* ``CONTINUE``: still in speech (short pauses included); ``chunks`` is ``[current]``.
* ``END``: ``min_silence_ms`` of windows below ``threshold - neg_threshold_offset`` (the hysteresis of the
  silero iterator: 0.8 - 0.15 = 0.65 with the server's settings). ``chunks`` is empty: trailing silence is not
  fed. In Freeze-Omni this is only a time-out (``el``); the duplex policy usually ends the turn first.

``speech_pad_ms`` only widens the reported sample positions (``SpeechEvent.sample``), as in the silero
iterator; it does not change when events fire. All state lives in a :class:`TrackerState` owned by the caller.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import torch
from torch import Tensor

from omnikit.registry import param


@dataclass
class SpeechTrackerConfig:
    threshold: float | None = param(
        None, "Speech when a window's probability is at least this; None: the VAD's."
    )
    neg_threshold_offset: float = param(
        0.15,
        "Silence (for the end timer) is a probability below threshold minus this (silero iterator: 0.15).",
    )
    min_silence_ms: float = param(2000.0, "Silence that ends a speech segment (Freeze-Omni server: 2000 ms).")
    speech_pad_ms: float = param(
        30.0, "Padding added to reported start/end sample positions (server: 30 ms)."
    )
    pre_roll_chunks: int = param(
        6, "Chunks before the trigger returned with a START (server: 6, about 960 ms)."
    )


class SpeechEventKind(StrEnum):
    SILENCE = "silence"
    START = "start"
    CONTINUE = "continue"
    END = "end"


@dataclass
class SpeechEvent:
    kind: SpeechEventKind
    chunks: list[Tensor]
    """Audio to feed to the input path now, oldest first (see the module docstring)."""
    is_speech: bool
    """Some window of this chunk reached the threshold."""
    probs: list[float]
    """Per-window speech probabilities of the windows completed by this chunk."""
    sample: int | None = None
    """START: padded first speech sample; END: padded end sample (stream positions); else None."""


@dataclass
class TrackerState:
    vad_state: Any
    pending: Tensor = field(default_factory=lambda: torch.zeros(0))
    samples_seen: int = 0
    triggered: bool = False
    silence_from: int | None = None
    history: deque = field(default_factory=deque)


class SpeechTracker:
    """Turns a VAD's window probabilities into speech START/CONTINUE/END events per audio chunk."""

    def __init__(self, vad: Any, config: SpeechTrackerConfig | None = None):
        self.vad = vad
        self.config = config or SpeechTrackerConfig()
        c = self.config
        self.threshold = c.threshold if c.threshold is not None else float(getattr(vad, "threshold", 0.5))
        self.neg_threshold = self.threshold - c.neg_threshold_offset
        self.min_silence_samples = int(round(c.min_silence_ms * vad.sample_rate / 1000.0))
        self.pad_samples = int(round(c.speech_pad_ms * vad.sample_rate / 1000.0))

    def init_state(self) -> TrackerState:
        return TrackerState(self.vad.init_state(), history=deque(maxlen=max(self.config.pre_roll_chunks, 0)))

    def end_turn(self, state: TrackerState) -> TrackerState:
        """Forget the current segment (the duplex policy ended the turn), so the next speech is a new START.

        The pre-roll ring is emptied too: it must not replay audio from before the finished turn. The VAD's
        own recurrent state is kept (it is a property of the audio stream, not of the turn).
        """
        state.triggered = False
        state.silence_from = None
        state.history.clear()
        return state

    def push(self, chunk: Tensor, state: TrackerState) -> tuple[list[SpeechEvent], TrackerState]:
        """Score one chunk of mono float audio; returns its events (at least one) and the updated state."""
        chunk = chunk.detach().reshape(-1).float()
        audio = torch.cat([state.pending, chunk]) if state.pending.numel() else chunk
        win = self.vad.window
        n_windows = audio.numel() // win
        transitions: list[tuple[SpeechEventKind, int]] = []
        probs: list[float] = []
        for i in range(n_windows):
            prob, state.vad_state = self.vad.speech_prob(audio[i * win : (i + 1) * win], state.vad_state)
            probs.append(prob)
            start, state.samples_seen = state.samples_seen, state.samples_seen + win
            if prob >= self.threshold:
                state.silence_from = None
                if not state.triggered:
                    state.triggered = True
                    transitions.append((SpeechEventKind.START, max(0, start - self.pad_samples)))
            elif prob < self.neg_threshold and state.triggered:
                if state.silence_from is None:
                    state.silence_from = start
                if state.samples_seen - state.silence_from >= self.min_silence_samples:
                    transitions.append((SpeechEventKind.END, state.silence_from + self.pad_samples))
                    state.triggered = False
                    state.silence_from = None
        state.pending = audio[n_windows * win :].clone()
        is_speech = any(p >= self.threshold for p in probs)

        events: list[SpeechEvent] = []
        for kind, sample in transitions:
            chunks = [*state.history, chunk] if kind is SpeechEventKind.START else []
            if kind is SpeechEventKind.START:
                state.history.clear()
            events.append(SpeechEvent(kind, chunks, is_speech, probs, sample))
        if not transitions:
            kind = SpeechEventKind.CONTINUE if state.triggered else SpeechEventKind.SILENCE
            events.append(SpeechEvent(kind, [chunk] if state.triggered else [], is_speech, probs))
        if not state.triggered and state.history.maxlen:
            state.history.append(chunk)
        return events, state
