"""Drive a :class:`Session` from files, as a live microphone would: what ``omnikit chat`` runs.

Each input file is streamed in 160 ms pieces, followed by trailing silence (a microphone keeps sending audio after
the user stops; the state head needs a few chunks of it to decide). The answer is generated after the turn is
decided. With ``interrupt_at``, the next input starts streaming once the running answer has produced that many
seconds of audio, and the answer keeps generating (one LLM token per input chunk) while the user speaks: if the
new question is decided RESPOND, the answer is cut off (barge-in).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from omnikit.audio.io import load_audio
from omnikit.inference.dialogue_model import DialogueModel
from omnikit.inference.session import Event, Session
from omnikit.interfaces import SAMPLE_RATE


@dataclass
class TurnResult:
    """One answer of a conversation."""

    answer: int
    text: str
    interrupted: bool
    audio_s: float
    timings: dict[str, float | None]


@dataclass
class ChatResult:
    turns: list[TurnResult] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    audio: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    sample_rate: int = SAMPLE_RATE

    def to_json(self) -> dict[str, Any]:
        return {"turns": [asdict(t) for t in self.turns], "decisions": self.decisions,
                "audio_s": round(self.audio.numel() / self.sample_rate, 3)}


class ChatDriver:
    """Feeds files and text into one session and collects text, decisions, audio and timings."""

    def __init__(self, model: DialogueModel, tail_silence_s: float = 2.5, realtime: bool = False,
                 system_prompt: str | None = None):
        self.session = Session(model, system_prompt=system_prompt)
        self.tail_silence_s = tail_silence_s
        self.realtime = realtime
        self.result = ChatResult(sample_rate=model.codec.sample_rate)
        self._audio: list[torch.Tensor] = []
        self._by_id: dict[int, TurnResult] = {}

    # -------------------------------------------------------------- events
    def _collect(self, events: list[Event]) -> None:
        for ev in events:
            if ev.kind == "decision":
                self.result.decisions.append({"t": round(ev.t, 3), **ev.data})
            elif ev.kind == "audio":
                self._audio.append(ev.data["pcm"])
            elif ev.kind == "interrupt":
                self._close(ev.data["answer"], interrupted=True)
            elif ev.kind == "answer_end":
                self._close(ev.data["answer"], interrupted=False)

    def _close(self, answer_id: int, interrupted: bool) -> None:
        if answer_id in self._by_id:
            return
        done = next(a for a in self.session.finished if a.id == answer_id)
        turn = TurnResult(done.id, done.text.strip(), interrupted, round(done.audio_samples / self.result.sample_rate, 3),
                          asdict(done.timings))
        self._by_id[answer_id] = turn
        self.result.turns.append(turn)

    # -------------------------------------------------------------- driving
    def _stream(self, wav: torch.Tensor, answer_steps_per_chunk: int = 0) -> None:
        s = self.session
        tail = torch.zeros(int(self.tail_silence_s * SAMPLE_RATE))
        audio = torch.cat([wav, tail])
        for i in range(0, audio.numel(), s.block):
            t0 = time.perf_counter()
            self._collect(s.push_audio(audio[i : i + s.block]))
            for _ in range(answer_steps_per_chunk):
                self._collect(s.step_answer())
            if self.realtime:
                time.sleep(max(0.0, s.block / SAMPLE_RATE - (time.perf_counter() - t0)))

    def _answer_until(self, audio_s: float | None) -> None:
        """Generate the running answer until it has produced ``audio_s`` seconds (None: to its end)."""
        s = self.session
        while s.answer is not None:
            if audio_s is not None and s.answer.audio_samples >= audio_s * self.result.sample_rate:
                return
            self._collect(s.step_answer())

    def run(self, inputs: list[torch.Tensor], interrupt_at: float | None = None) -> ChatResult:
        for i, wav in enumerate(inputs):
            barge_in = interrupt_at is not None and i > 0
            self._stream(wav, answer_steps_per_chunk=1 if barge_in else 0)
            self._answer_until(interrupt_at if interrupt_at is not None and i + 1 < len(inputs) else None)
        self._answer_until(None)
        return self._finish()

    def ask(self, text: str) -> ChatResult:
        self._collect(self.session.ask_text(text))
        self._answer_until(None)
        return self._finish()

    def _finish(self) -> ChatResult:
        self.result.audio = torch.cat(self._audio) if self._audio else torch.zeros(0)
        return self.result


def load_inputs(paths: list[Path]) -> list[torch.Tensor]:
    """Read every input before anything runs, so a bad file fails fast with its name."""
    return [load_audio(p) for p in paths]

