"""The duplex-policy kind: per chunk of a user turn, decide whether to keep listening, answer, or drop it.

A policy is driven by the session for every chunk of an open user turn (from the VAD start until the policy
returns a terminal decision), with what is known about that chunk:

* ``is_speech``: the VAD found speech in the chunk (``SpeechEvent.is_speech``);
* ``state_probs``: the LLM state head's probabilities at the chunk's last position, shape ``(num_states,)``
  (or any shape whose last dimension is the states; the last row is used), order ``omnikit.interfaces.STATES``
  = (listen, respond, ignore). ``None`` when there are none: pre-roll chunks (the server overrides their
  predictions, spec §3.5), or no state head;
* ``chunk_ms``: the chunk's duration.

It returns a :class:`Decision`. ``LISTEN`` keeps the turn open; ``RESPOND`` and ``IGNORE`` end it, and the
policy resets its :class:`TurnState` in place, ready for the next turn. The state is owned by the caller and
mutated in place; the policy object holds only configuration, so one policy serves many sessions. The contract
itself is ``omnikit.interfaces.DuplexPolicy`` (re-exported here).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from omnikit.interfaces import DuplexPolicy


class Decision(StrEnum):
    LISTEN = "listen"
    """Keep streaming the user's speech into the fork."""
    RESPOND = "respond"
    """The user's turn is over and the model takes it (Freeze-Omni state 1, ``ss``)."""
    IGNORE = "ignore"
    """The user's turn is over and needs no answer (state 2 / VAD time-out, ``el``): drop it."""

    @property
    def ends_turn(self) -> bool:
        return self is not Decision.LISTEN


@dataclass
class TurnState:
    """What a policy remembers about the open user turn."""

    heard_ms: float = 0.0
    """Audio fed in this turn (speech and silence)."""
    speech_ms: float = 0.0
    """Chunks with speech in this turn."""
    silence_ms: float = 0.0
    """Trailing silence: since the last speech chunk, or since the turn opened if none yet."""

    def update(self, is_speech: bool, chunk_ms: float) -> None:
        self.heard_ms += chunk_ms
        if is_speech:
            self.speech_ms += chunk_ms
            self.silence_ms = 0.0
        else:
            self.silence_ms += chunk_ms

    def reset(self) -> None:
        self.heard_ms = self.speech_ms = self.silence_ms = 0.0


__all__ = ["Decision", "DuplexPolicy", "TurnState"]
