"""The dialogue state machine of a full-duplex session: pure turn-taking logic, no model inside.

A Session feeds it events (the VAD found speech, the duplex policy decided, the answer finished, the client
reset) and executes the :class:`Action` list each event returns, in order. Keeping the logic here makes it
testable with scripted decisions and keeps the Session a thin executor. The transition table is in
``docs/components/duplex.md``.

Conversation model (Freeze-Omni server, spec §3.5 and §6.6): the session keeps a *committed conversation*
(the LLM state of the system prompt and previous turns; the running answer's tokens are appended to it as
they are generated). A user turn streams into a *fork*: a copy of the committed conversation taken at the
VAD start. Answering commits the fork (it replaces the committed conversation); ignoring drops it, leaving no
trace. Barge-in: while the bot speaks, a new user turn forks the conversation as it is at that moment, which
includes the partial answer so far. A RESPOND interrupts the answer (generation and audio stop at once) and
commits the fork, so the partial answer up to the fork point stays in context; tokens generated between the
fork and the decision are not in the new context, as in the paper's server. An IGNORE while speaking drops
the fork and leaves the answer running.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from omnikit.components.duplex.base import Decision


class DialogueState(StrEnum):
    LISTENING = "listening"
    """Idle: no user turn open, no answer running (waiting for a VAD start)."""
    HEARING = "hearing"
    """A user turn streams into a fork; no answer is running."""
    SPEAKING = "speaking"
    """An answer is being generated and spoken; no user turn is open."""
    SPEAKING_HEARING = "speaking_hearing"
    """An answer is running and a user turn (a barge-in candidate) streams into a fork."""


class ActionKind(StrEnum):
    FORK_CONVERSATION = "fork_conversation"
    """Copy the committed conversation into a new fork (``turn``); the turn's audio is fed into it."""
    COMMIT_FORK = "commit_fork"
    """The fork ``turn`` becomes the committed conversation."""
    DROP_FORK = "drop_fork"
    """Discard the fork ``turn``: the user's turn leaves no trace in the context."""
    START_ANSWER = "start_answer"
    """Start generating and speaking answer ``answer`` from the committed conversation."""
    INTERRUPT_ANSWER = "interrupt_answer"
    """Stop answer ``answer`` now: generation stops, queued audio is discarded, the client stops playback."""
    ANSWER_FINISHED = "answer_finished"
    """Answer ``answer`` ended on its own; the session closes it in the committed conversation."""
    RESET_CONVERSATION = "reset_conversation"
    """Reset the committed conversation to the system prompt."""


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    turn: int | None = None
    """The user turn (fork) the action is about."""
    answer: int | None = None
    """The answer the action is about."""


class DialogueStateMachine:
    """Turn-taking with barge-in, driven by events; each event method returns the actions to execute."""

    def __init__(self) -> None:
        self.state = DialogueState.LISTENING
        self.turn: int | None = None
        """Open user turn (fork id), if any."""
        self.answer: int | None = None
        """Running answer id, if any."""
        self._turns = 0
        self._answers = 0

    @property
    def fork_open(self) -> bool:
        """Whether user audio should be fed (into fork ``turn``) and the duplex policy consulted."""
        return self.turn is not None

    @property
    def speaking(self) -> bool:
        return self.answer is not None

    def _set_state(self) -> None:
        hearing, speaking = self.turn is not None, self.answer is not None
        self.state = {
            (False, False): DialogueState.LISTENING,
            (True, False): DialogueState.HEARING,
            (False, True): DialogueState.SPEAKING,
            (True, True): DialogueState.SPEAKING_HEARING,
        }[(hearing, speaking)]

    def speech_start(self) -> list[Action]:
        """The VAD detected the start of user speech. Opens a fork unless one is already open."""
        if self.turn is not None:
            return []
        self._turns += 1
        self.turn = self._turns
        self._set_state()
        return [Action(ActionKind.FORK_CONVERSATION, turn=self.turn)]

    def decide(self, decision: Decision) -> list[Action]:
        """The duplex policy's decision for the latest chunk of the open turn (no-op when none is open)."""
        if self.turn is None or decision is Decision.LISTEN:
            return []
        turn, self.turn = self.turn, None
        actions: list[Action] = []
        if decision is Decision.IGNORE:
            actions.append(Action(ActionKind.DROP_FORK, turn=turn))
        else:
            if self.answer is not None:
                actions.append(Action(ActionKind.INTERRUPT_ANSWER, answer=self.answer))
            self._answers += 1
            self.answer = self._answers
            actions += [
                Action(ActionKind.COMMIT_FORK, turn=turn),
                Action(ActionKind.START_ANSWER, turn=turn, answer=self.answer),
            ]
        self._set_state()
        return actions

    def answer_done(self, answer: int | None = None) -> list[Action]:
        """The running answer finished (text done and audio played). ``answer``: its id, so that a late report
        from an already interrupted answer is recognised and ignored; None means the running one."""
        if self.answer is None or (answer is not None and answer != self.answer):
            return []
        done, self.answer = self.answer, None
        self._set_state()
        return [Action(ActionKind.ANSWER_FINISHED, answer=done)]

    def reset(self) -> list[Action]:
        """The client restarted the conversation: stop everything and go back to the system prompt."""
        actions: list[Action] = []
        if self.answer is not None:
            actions.append(Action(ActionKind.INTERRUPT_ANSWER, answer=self.answer))
        if self.turn is not None:
            actions.append(Action(ActionKind.DROP_FORK, turn=self.turn))
        actions.append(Action(ActionKind.RESET_CONVERSATION))
        self.turn = self.answer = None
        self._set_state()
        return actions
