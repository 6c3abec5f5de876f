"""One user's live dialogue: audio pieces in, decisions, text and speech out, with barge-in.

Where a chunk of audio goes (``Session.push_audio``):

1. PCM is cut into 160 ms blocks (2560 samples at 16 kHz);
2. the VAD tracker scores each block: a speech START opens a user turn, which the
   :class:`~omnikit.inference.state_machine.DialogueStateMachine` turns into a *fork* of the conversation;
3. while a turn is open, each block goes front-end (fbank) -> encoder chunk -> adapter chunk -> the LLM fork,
   whose state head gives (listen, respond, ignore) probabilities at the chunk's end;
4. the duplex policy turns them into a decision; RESPOND commits the fork and starts an answer (interrupting a
   running one: barge-in); IGNORE drops the fork, leaving no trace.

An answer advances one LLM token per :meth:`Session.step_answer`: text deltas go into the
:class:`~omnikit.inference.segmenter.TextSegmenter`; each closed segment goes speech decoder -> streaming codec
decoder -> PCM events, first chunk small. The caller interleaves ``push_audio`` and ``step_answer`` (a server
does it per session; ``omnikit chat`` does it for files), so the session keeps listening while it speaks.

All per-user state lives here; the :class:`DialogueModel` holds only weights.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from omnikit.components.duplex.base import Decision
from omnikit.components.vads.vad_tracker import SpeechEventKind
from omnikit.inference.dialogue_model import DialogueModel
from omnikit.inference.segmenter import Segment, SegmenterConfig, TextSegmenter
from omnikit.inference.state_machine import Action, ActionKind, DialogueStateMachine
from omnikit.interfaces import SAMPLE_RATE

REPLACEMENT_CHAR = "\ufffd"  # a partial multi-byte character: wait for the next token before emitting text


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 2)


@dataclass
class Event:
    """Something the session did. ``t``: input-stream time (s) when it happened."""

    kind: str  # speech_start | decision | interrupt | text | audio | answer_end
    t: float
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class AnswerTimings:
    """The paper's latency breakdown for one answer, in milliseconds of wall time (spec §7.4)."""

    decision_to_first_segment_ms: float | None = None
    """RESPOND decision -> the first text segment is closed (LLM generation)."""
    segment_to_decoder_prefill_ms: float | None = None
    """First text segment -> speech decoder prefill done."""
    prefill_to_first_token_chunk_ms: float | None = None
    """Decoder prefill done -> first codec-token chunk generated."""
    token_chunk_to_first_pcm_ms: float | None = None
    """First codec-token chunk -> first PCM decoded."""
    decision_to_first_pcm_ms: float | None = None
    """Total: RESPOND decision -> first PCM."""
    speech_end_to_decision_ms: float | None = None
    """Input-stream time from the last speech chunk of the question to the RESPOND decision."""


@dataclass
class _Answer:
    id: int
    t_decision: float
    token: int | None = None
    ids: list[int] = field(default_factory=list)
    text: str = ""
    segments: int = 0
    audio_samples: int = 0
    timings: AnswerTimings = field(default_factory=AnswerTimings)
    segmenter: TextSegmenter = field(default_factory=TextSegmenter)
    first: tuple[int, Tensor] | None = None  # the first token and its hidden state, sampled at the decision


class Session:
    """All per-user state of a streaming dialogue over a shared :class:`DialogueModel`."""

    def __init__(self, model: DialogueModel, system_prompt: str | None = None,
                 segmenter: SegmenterConfig | None = None):
        self.model = model
        self.settings = model.settings
        self.system_prompt = system_prompt if system_prompt is not None else self.settings.system_prompt
        self.sampling = self.settings.sampling()
        self.generator = torch.Generator().manual_seed(self.settings.seed)
        self.segmenter_config = segmenter or SegmenterConfig()
        self.machine = DialogueStateMachine()
        self.conversation = model.llm.new_conversation(self.system_prompt)  # committed context
        self.fork: Any = None  # the open user turn's conversation, if any
        self.answer: _Answer | None = None
        self.tracker_state = model.tracker.init_state()
        self.turn_state = model.policy.init_state()
        self.block = int(round(self.settings.chunk_ms * SAMPLE_RATE / 1000))
        self._pending = torch.zeros(0)
        self._samples_in = 0
        self._last_speech_t: float | None = None
        self._input_states: tuple[Any, Any, Any] | None = None  # front-end, encoder, adapter
        self.finished: list[_Answer] = []

    # ------------------------------------------------------------------ input
    @property
    def t(self) -> float:
        """Input-stream time in seconds."""
        return self._samples_in / SAMPLE_RATE

    @property
    def speaking(self) -> bool:
        return self.answer is not None

    def push_audio(self, pcm: Tensor) -> list[Event]:
        """Feed 16 kHz mono float PCM of any length; returns what happened (decisions, interrupts, ...)."""
        pcm = torch.as_tensor(pcm, dtype=torch.float32).reshape(-1)
        buf = torch.cat([self._pending, pcm])
        events: list[Event] = []
        start = 0
        while buf.numel() - start >= self.block:
            events += self._block(buf[start : start + self.block])
            start += self.block
        self._pending = buf[start:].clone()
        return events

    def _block(self, block: Tensor) -> list[Event]:
        self._samples_in += block.numel()
        events: list[Event] = []
        speech_events, self.tracker_state = self.model.tracker.push(block, self.tracker_state)
        for ev in speech_events:
            if ev.is_speech:
                self._last_speech_t = self.t
            if ev.kind is SpeechEventKind.START:
                actions = self.machine.speech_start()
                events += self._run(actions)
                if any(x.kind is ActionKind.FORK_CONVERSATION for x in actions):
                    self.model.llm.start_user_turn(self.fork)
                    events.append(Event("speech_start", self.t, {"pre_roll_chunks": len(ev.chunks) - 1}))
                    for pre in ev.chunks[:-1]:  # pre-roll: heard, but no decision (as the paper's server)
                        self._hear(pre)
                    events += self._decide(self._hear(ev.chunks[-1]), ev.is_speech)
            elif ev.kind is SpeechEventKind.CONTINUE and self.fork is not None:
                for chunk in ev.chunks:
                    events += self._decide(self._hear(chunk), ev.is_speech)
            elif ev.kind is SpeechEventKind.END and self.fork is not None:
                # the VAD's silence time-out: the policy gets a last say, otherwise the turn is dropped
                decision = self.model.policy.on_chunk(self.turn_state, is_speech=False, state_probs=None,
                                                      chunk_ms=0.0)
                events += self._apply(decision if decision.ends_turn else Decision.IGNORE, None, "vad_end")
        return events

    @torch.no_grad()
    def _hear(self, chunk: Tensor) -> Tensor | None:
        """One 160 ms block through front-end, encoder, adapter into the fork; state probabilities."""
        m = self.model
        fe, enc, ad = self._input_states
        feats, fe = m.frontend.push(chunk, fe)
        probs = None
        for f in feats:
            hidden, enc = m.encoder.forward_chunk(f[None].to(m.llm.device), enc)
            emb, ad = m.adapter.forward_chunk(hidden, ad)
            # an empty chunk (a connector between words) re-reads the state at the newest position
            probs = m.llm.append_audio(self.fork, emb.to(m.llm.dtype))
        self._input_states = (fe, enc, ad)
        return probs

    def _decide(self, probs: Tensor | None, is_speech: bool) -> list[Event]:
        decision = self.model.policy.on_chunk(self.turn_state, is_speech=is_speech, state_probs=probs,
                                              chunk_ms=self.settings.chunk_ms)
        return self._apply(decision, probs, "policy")

    def _apply(self, decision: Decision, probs: Tensor | None, reason: str) -> list[Event]:
        if decision is Decision.LISTEN:
            return []
        data: dict[str, Any] = {"decision": decision.value, "reason": reason}
        if probs is not None:
            data["probs"] = [round(float(p), 4) for p in probs.reshape(-1)]
        delay = None if self._last_speech_t is None else (self.t - self._last_speech_t) * 1000
        events = [Event("decision", self.t, data)]
        self.tracker_state = self.model.tracker.end_turn(self.tracker_state)
        events += self._run(self.machine.decide(decision))
        if decision is Decision.RESPOND and self.answer is not None:
            self.answer.timings.speech_end_to_decision_ms = None if delay is None else round(delay, 1)
        return events

    # ------------------------------------------------------------------ state machine actions
    def _run(self, actions: list[Action]) -> list[Event]:
        events: list[Event] = []
        for a in actions:
            if a.kind is ActionKind.FORK_CONVERSATION:
                self.fork = self.model.llm.fork(self.conversation)  # the user turn is opened by its input
                self._input_states = (self.model.frontend.init_state(), self.model.encoder.init_state(),
                                      self.model.adapter.init_state())
                self.turn_state = self.model.policy.init_state()
            elif a.kind is ActionKind.COMMIT_FORK:
                self.conversation, self.fork = self.fork, None
            elif a.kind is ActionKind.DROP_FORK:
                self.fork = None
            elif a.kind is ActionKind.START_ANSWER:
                self.answer = _Answer(a.answer or 0, time.perf_counter(),
                                      segmenter=TextSegmenter(self.segmenter_config))
                # open the assistant turn now: the committed conversation must never be left in a user turn,
                # or a barge-in fork taken before the first step would inherit it
                self.answer.first = self.model.llm.start_assistant(self.conversation, self.sampling, self.generator)
            elif a.kind is ActionKind.INTERRUPT_ANSWER:
                if self.answer is not None:
                    events.append(Event("interrupt", self.t, {"answer": self.answer.id,
                                                              "text_so_far": self.answer.text}))
                    self.finished.append(self.answer)
                self.answer = None
            elif a.kind is ActionKind.ANSWER_FINISHED:
                if self.answer is not None:
                    self.finished.append(self.answer)
                self.answer = None
            elif a.kind is ActionKind.RESET_CONVERSATION:
                self.conversation = self.model.llm.new_conversation(self.system_prompt)
        return events

    # ------------------------------------------------------------------ text input
    def ask_text(self, text: str) -> list[Event]:
        """A written user turn (the frozen LLM's text path), answered in speech like a spoken one."""
        events = self._run(self.machine.speech_start())
        self.model.llm.append_text_user_turn(self.fork, text)
        events.append(Event("decision", self.t, {"decision": Decision.RESPOND.value, "reason": "text"}))
        return events + self._run(self.machine.decide(Decision.RESPOND))

    # ------------------------------------------------------------------ output
    @torch.no_grad()
    def step_answer(self) -> list[Event]:
        """Generate one more LLM token of the running answer (speaking each closed segment)."""
        a = self.answer
        if a is None:
            return []
        llm, s = self.model.llm, self.settings
        if a.token is None:
            token, hidden = a.first
        else:
            token, hidden = llm.step(self.conversation, a.token, self.sampling, self.generator)
        a.token = token
        events: list[Event] = []
        if llm.is_end_of_turn(token) or len(a.ids) >= s.max_answer_tokens:
            seg = a.segmenter.flush()
            if seg is not None:
                events += self._speak(a, seg)
            events.append(Event("answer_end", self.t, {"answer": a.id, "text": a.text.strip(),
                                                      "audio_s": a.audio_samples / self.model.codec.sample_rate}))
            return events + self._run(self.machine.answer_done(a.id))
        a.ids.append(token)
        text = str(llm.tokenizer.decode(a.ids, skip_special_tokens=True))
        delta = ""
        if not text.endswith(REPLACEMENT_CHAR) and text.startswith(a.text):
            delta, a.text = text[len(a.text):], text
        if delta:
            events.append(Event("text", self.t, {"answer": a.id, "delta": delta}))
        seg = a.segmenter.push(delta, token, hidden)
        if seg is not None:
            events += self._speak(a, seg)
        return events

    def finish_answer(self) -> list[Event]:
        """Run the running answer to its end."""
        events: list[Event] = []
        while self.answer is not None:
            events += self.step_answer()
        return events

    def interrupt(self) -> list[Event]:
        """Stop the running answer at the client's request (a stop button): generation and audio stop, the partial
        answer stays in the context, as after a barge-in. No-op when no answer runs."""
        a = self.answer
        if a is None:
            return []
        event = Event("interrupt", self.t, {"answer": a.id, "text_so_far": a.text, "reason": "client"})
        self._run(self.machine.answer_done(a.id))
        return [event]

    def _speak(self, a: _Answer, seg: Segment) -> list[Event]:
        """One text segment -> codec tokens -> PCM events (codec context restarts per segment, spec §10.8)."""
        m, s, tm = self.model, self.settings, a.timings
        text = seg.clean_text
        ids = m.llm.tokenize(text)
        if not ids or seg.hidden is None:
            return []
        t_seg = time.perf_counter()
        first_segment = a.segments == 0
        if first_segment:
            tm.decision_to_first_segment_ms = _ms(t_seg - a.t_decision)
        text_emb = m.llm.embed(ids)[None].float()
        hidden = seg.hidden[None].float()
        dec_t: dict[str, float] = {}
        stream = m.codec.streaming_decoder(first_chunk=s.first_chunk, chunk=s.chunk, context=s.codec_context)
        events: list[Event] = []
        got_pcm = False
        for i, tokens in enumerate(m.speech_decoder.generate(
            text_emb, hidden, top_k=s.decoder_top_k, repetition_penalty=s.decoder_repetition_penalty,
            max_tokens=s.decoder_max_tokens, first_chunk=s.first_chunk, chunk=s.chunk,
            generator=self.generator, timings=dec_t, text=text, codec=m.codec,
        )):
            t_tokens = time.perf_counter()
            pcm = stream.push(tokens)
            if first_segment and i == 0:
                tm.segment_to_decoder_prefill_ms = _ms(dec_t.get("prefill_s"))
                tm.prefill_to_first_token_chunk_ms = _ms(dec_t.get("first_chunk_s"))
            if pcm.numel():
                if first_segment and not got_pcm and a.audio_samples == 0:
                    tm.token_chunk_to_first_pcm_ms = _ms(time.perf_counter() - t_tokens)
                    tm.decision_to_first_pcm_ms = _ms(time.perf_counter() - a.t_decision)
                got_pcm = True
                events.append(self._audio_event(a, pcm))
        tail = stream.flush()
        if tail.numel():
            if a.audio_samples == 0 and tm.decision_to_first_pcm_ms is None:
                tm.decision_to_first_pcm_ms = _ms(time.perf_counter() - a.t_decision)
            events.append(self._audio_event(a, tail))
        a.segments += 1
        return events

    def _audio_event(self, a: _Answer, pcm: Tensor) -> Event:
        pcm = pcm.detach().float().reshape(-1).cpu()
        a.audio_samples += pcm.numel()
        return Event("audio", self.t, {"answer": a.id, "pcm": pcm, "sample_rate": self.model.codec.sample_rate})
