"""Freeze-Omni's duplex policy: the LLM state head decides; a VAD silence time-out is the fallback (§3.4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from omnikit.components.duplex.base import Decision, TurnState
from omnikit.interfaces import STATES
from omnikit.registry import param


@dataclass
class StateHeadPolicyConfig:
    respond_threshold: float = param(0.5, "RESPOND when P(respond) exceeds this (Freeze-Omni: 0.5).")
    ignore_threshold: float = param(
        0.5, "IGNORE when P(ignore) exceeds this; checked first (Freeze-Omni: 0.5)."
    )
    respond_index: int = param(STATES.index("respond"), "Index of the respond state in the head's output.")
    ignore_index: int = param(STATES.index("ignore"), "Index of the ignore state in the head's output.")
    from_logits: bool = param(
        False,
        "state_probs are raw logits: softmax over the first `num_states` entries (drops the dummy class).",
    )
    num_states: int = param(len(STATES), "States used at inference when `from_logits` (Freeze-Omni: 3 of 4).")
    min_speech_ms: float = param(
        0.0, "RESPOND is only allowed after this much speech in the turn (Freeze-Omni: 0, no minimum)."
    )
    silence_timeout_ms: float = param(
        2000.0,
        "End the turn after this much trailing silence without a head decision (0 = never); the "
        "server's VAD end (min silence 2000 ms).",
    )
    timeout_decision: Literal["ignore", "respond"] = param(
        "ignore", "Decision at the silence time-out: 'ignore' (Freeze-Omni's `el`) or 'respond'."
    )


class StateHeadPolicy:
    """LLM state-head turn-taking (ignore checked before respond) with a VAD silence time-out fallback."""

    config_class = StateHeadPolicyConfig

    def __init__(self, config: StateHeadPolicyConfig):
        self.config = config
        if config.respond_index == config.ignore_index:
            raise ValueError("state_head policy: respond_index and ignore_index must differ")
        if config.timeout_decision not in ("ignore", "respond"):
            raise ValueError(
                f"state_head: timeout_decision must be ignore or respond, not {config.timeout_decision!r}"
            )

    def init_state(self) -> TurnState:
        return TurnState()

    def state_distribution(self, state_probs: Tensor) -> Tensor:
        """The last position's probabilities as a 1-D float tensor."""
        row = state_probs.detach().float().reshape(-1, state_probs.shape[-1])[-1]
        if self.config.from_logits:
            row = row[: self.config.num_states].softmax(-1)
        return row

    def on_chunk(
        self, state: TurnState, *, is_speech: bool, state_probs: Tensor | None, chunk_ms: float
    ) -> Decision:
        c = self.config
        state.update(is_speech, chunk_ms)
        decision = Decision.LISTEN
        if state_probs is not None:
            probs = self.state_distribution(state_probs)
            if float(probs[c.ignore_index]) > c.ignore_threshold:
                decision = Decision.IGNORE
            elif float(probs[c.respond_index]) > c.respond_threshold and state.speech_ms >= c.min_speech_ms:
                decision = Decision.RESPOND
        if (
            decision is Decision.LISTEN
            and c.silence_timeout_ms > 0
            and state.silence_ms >= c.silence_timeout_ms
        ):
            decision = Decision(c.timeout_decision)
        if decision.ends_turn:
            state.reset()
        return decision
