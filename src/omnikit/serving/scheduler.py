"""One worker thread runs every session's model work, round robin, on the one shared :class:`DialogueModel`.

Why one thread: the model's modules are not made for concurrent calls, and on a CPU server PyTorch already
spreads each call over the cores (intra-op threads), so a second worker would only contend for them. The event
loop never runs model code; it queues work here and sends what comes back.

Fairness: each *round* visits every client that has something to do, starting one further each round, and gives
it one unit: up to one 160 ms block of queued input (or one control message), then one answer step (one LLM token,
plus the speech of a text segment when one closes). A client that sends audio faster than real time therefore gets
one block per round like everyone else, and its extra audio waits in its own queue, which is bounded: the
connection stops reading its socket while the queue is full, which slows the sender (TCP backpressure), and
drops it after ``stall_timeout_s``. An answer only advances while less than ``max_queued_output_s`` of its audio
waits to be written to the socket, so a client that stops reading pauses its own answer and nobody else's.

LLM steps are not batched across sessions: each session's step runs on its own cache (see docs/serving.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from omnikit.inference.dialogue_model import DialogueModel
from omnikit.inference.session import Event, Session
from omnikit.interfaces import SAMPLE_RATE
from omnikit.serving.protocol import (
    CLOSE_INTERNAL,
    CLOSE_NORMAL,
    Limits,
    error_event,
    float_to_pcm16,
    session_event_message,
)

log = logging.getLogger("omnikit.serve")
KEEP_FINISHED = 4
"""Finished answers a session keeps (their timings are sent as ``latency`` events, then dropped)."""


@dataclass(eq=False)
class Outgoing:
    """A message from the worker to a connection's sender: JSON, answer PCM, a latency record or a close."""

    kind: str  # json | pcm | latency | close
    payload: Any = None
    answer: int | None = None
    t_decision: float | None = None  # perf_counter() of the answer's RESPOND decision (pcm)
    samples: int = 0  # pcm
    code: int = CLOSE_NORMAL  # close
    reason: str = ""  # close


@dataclass(eq=False)
class Client:
    """One connection's share of the scheduler: its queued work, its session, and where its messages go."""

    id: int
    post: Callable[[Outgoing], None]
    """Thread-safe hand-off of a message to the connection (the server wraps ``call_soon_threadsafe``)."""
    inbox: deque[tuple[str, Any]] = field(default_factory=deque)
    inbox_samples: int = 0
    """Input audio queued, not yet given to the session."""
    out_samples: int = 0
    """Answer audio handed to the connection, not yet written to its socket."""
    session: Session | None = None
    ending: bool = False
    done: bool = False
    """No more work: ended, failed or gone."""
    last_state: str | None = None
    answer_id: int | None = None
    t_decision: dict[int, float] = field(default_factory=dict)
    work_s: float = 0.0
    """Worker time spent on this client."""

    @property
    def busy(self) -> bool:
        """Whether work is queued or an answer is running (an idle timeout waits for it)."""
        s = self.session
        return bool(self.inbox) or self.out_samples > 0 or (s is not None and s.answer is not None)


def interrupt_answer(session: Session) -> list[Event]:
    """Stop the running answer at the client's request (see :meth:`Session.interrupt`)."""
    return session.interrupt()


class Scheduler:
    """Runs all clients' work on one worker thread, one unit per client per round (see the module docs)."""

    def __init__(self, model: DialogueModel, limits: Limits | None = None):
        self.model = model
        self.limits = limits or Limits()
        self.block = int(round(model.settings.chunk_ms * SAMPLE_RATE / 1000))
        self.out_rate = int(model.codec.sample_rate)
        self.max_out_samples = int(self.limits.max_queued_output_s * self.out_rate)
        self._cond = threading.Condition()
        self._clients: list[Client] = []
        self._stop = False
        self._thread: threading.Thread | None = None
        self.rounds = 0
        self.work_s = 0.0
        self.max_round_s = 0.0

    # ------------------------------------------------------------------ lifecycle (any thread)
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="omnikit-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def add(self, client: Client) -> None:
        with self._cond:
            self._clients.append(client)
            self._cond.notify_all()

    def remove(self, client: Client) -> None:
        """Forget a client (its connection is gone); its session is freed once the worker lets go of it."""
        with self._cond:
            client.done = True
            client.inbox.clear()
            client.inbox_samples = 0
            if client in self._clients:
                self._clients.remove(client)
            self._cond.notify_all()

    def submit(self, client: Client, kind: str, value: Any = None) -> None:
        """Queue a unit of work: ``start``, ``audio`` (float PCM tensor), ``text``, ``interrupt`` or ``end``."""
        with self._cond:
            if client.done:
                return
            client.inbox.append((kind, value))
            if kind == "audio":
                client.inbox_samples += int(value.numel())
            self._cond.notify_all()

    def sent(self, client: Client, samples: int) -> None:
        """The connection wrote ``samples`` of answer audio to its socket (frees room for the answer)."""
        with self._cond:
            client.out_samples -= samples
            self._cond.notify_all()

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {"sessions": len(self._clients), "rounds": self.rounds, "work_s": round(self.work_s, 3),
                    "max_round_s": round(self.max_round_s, 4)}

    # ------------------------------------------------------------------ worker thread
    def _can_step(self, c: Client) -> bool:
        return c.session is not None and c.session.answer is not None and c.out_samples < self.max_out_samples

    def _ready(self, c: Client) -> bool:
        if c.done:
            return False
        if c.inbox or self._can_step(c):
            return True
        return c.ending and (c.session is None or c.session.answer is None)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and not any(self._ready(c) for c in self._clients):
                    self._cond.wait()
                if self._stop:
                    return
                n = len(self._clients)
                start = self.rounds % n
                order = [c for c in self._clients[start:] + self._clients[:start] if self._ready(c)]
            t0 = time.perf_counter()
            for c in order:
                t1 = time.perf_counter()
                self._turn(c)
                c.work_s += time.perf_counter() - t1
            dt = time.perf_counter() - t0
            self.rounds += 1
            self.work_s += dt
            self.max_round_s = max(self.max_round_s, dt)

    def _pop(self, c: Client) -> tuple[str, Any] | None:
        """The next unit of input: a control message, or up to one block of queued audio (frames coalesced)."""
        if not c.inbox:
            return None
        if c.inbox[0][0] != "audio":
            return c.inbox.popleft()
        pieces, n = [], 0
        while c.inbox and c.inbox[0][0] == "audio" and n < self.block:
            pcm = c.inbox[0][1]
            take = min(self.block - n, pcm.numel())
            pieces.append(pcm[:take])
            n += take
            if take == pcm.numel():
                c.inbox.popleft()
            else:
                c.inbox[0] = ("audio", pcm[take:])
        c.inbox_samples -= n
        return ("audio", torch.cat(pieces) if len(pieces) > 1 else pieces[0])

    def _turn(self, c: Client) -> None:
        with self._cond:
            if c.done:
                return
            item = self._pop(c)
        try:
            if item is not None:
                self._handle(c, *item)
            if not c.done and self._can_step(c):
                assert c.session is not None
                self._emit(c, c.session.step_answer())
            if c.ending and not c.done and not c.inbox and (c.session is None or c.session.answer is None):
                c.done = True
                self._post(c, Outgoing("json", {"type": "bye"}))
                self._post(c, Outgoing("close", code=CLOSE_NORMAL, reason="end"))
        except Exception as exc:  # this session is broken; the others go on
            log.exception("session %d failed", c.id)
            c.done = True
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            self._post(c, Outgoing("json", error_event("internal", f"{type(exc).__name__}: {first}")))
            self._post(c, Outgoing("close", code=CLOSE_INTERNAL, reason="internal error; see the server log"))

    def _handle(self, c: Client, kind: str, value: Any) -> None:
        if kind == "start":
            c.session = Session(self.model)
            self._post(c, Outgoing("json", {"type": "started", "session": c.id}))
            self._after(c)
        elif kind == "end":
            c.ending = True
        elif c.session is None:  # the connection refuses these before start; kept as a guard
            self._post(c, Outgoing("json", error_event("not_started", f"send start before {kind}")))
        elif kind == "audio":
            self._emit(c, c.session.push_audio(value))
        elif kind == "text":
            if c.session.machine.fork_open:
                self._post(c, Outgoing("json", error_event(
                    "busy", "a spoken turn is open (the user is speaking); send the question after its decision")))
            else:
                self._emit(c, c.session.ask_text(value))
        elif kind == "interrupt":
            self._emit(c, interrupt_answer(c.session))

    def _emit(self, c: Client, events: list[Event]) -> None:
        s = c.session
        assert s is not None
        for ev in events:
            if ev.kind == "audio":
                pcm = float_to_pcm16(ev.data["pcm"])
                samples = len(pcm) // 2
                if not samples:
                    continue
                with self._cond:
                    c.out_samples += samples
                answer = int(ev.data["answer"])
                self._post(c, Outgoing("pcm", pcm, answer=answer, t_decision=c.t_decision.get(answer),
                                       samples=samples))
                continue
            msg = session_event_message(ev.kind, ev.t, ev.data)
            if ev.kind == "interrupt":
                msg.setdefault("reason", "barge_in")
            self._post(c, Outgoing("json", msg))
            if ev.kind in ("interrupt", "answer_end"):
                self._latency(c, int(ev.data["answer"]), interrupted=ev.kind == "interrupt")
        self._after(c)

    def _after(self, c: Client) -> None:
        """Announce a new answer and a changed dialogue state."""
        s = c.session
        assert s is not None
        if s.answer is not None and s.answer.id != c.answer_id:
            c.answer_id = s.answer.id
            c.t_decision[s.answer.id] = s.answer.t_decision
            self._post(c, Outgoing("json", {"type": "answer_start", "answer": s.answer.id, "t": round(s.t, 3)}))
        state = s.machine.state.value
        if state != c.last_state:
            c.last_state = state
            self._post(c, Outgoing("json", {"type": "state", "state": state, "t": round(s.t, 3)}))

    def _latency(self, c: Client, answer: int, interrupted: bool) -> None:
        s = c.session
        assert s is not None
        done = next((a for a in reversed(s.finished) if a.id == answer), None)
        timings = asdict(done.timings) if done is not None else {}
        self._post(c, Outgoing("latency", {"type": "latency", "answer": answer, "interrupted": interrupted,
                                           **timings}, answer=answer))
        c.t_decision.pop(answer, None)
        del s.finished[:-KEEP_FINISHED]  # a long conversation must not keep every answer's state

    def _post(self, c: Client, out: Outgoing) -> None:
        try:
            c.post(out)
        except RuntimeError:  # the connection's event loop is gone
            c.done = True
