"""The baseline duplex policy: answer after a fixed silence following speech. Ignores the LLM state head."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from omnikit.components.duplex.base import Decision, TurnState
from omnikit.registry import param


@dataclass
class VADEndpointPolicyConfig:
    endpoint_ms: float = param(800.0, "RESPOND after this much silence following speech.")
    min_speech_ms: float = param(
        160.0, "Speech needed in the turn before an endpoint counts; shorter turns end as IGNORE."
    )
    no_speech_timeout_ms: float = param(
        2000.0,
        "IGNORE a turn with under `min_speech_ms` of speech after this much trailing silence (0 = never).",
    )


class VADEndpointPolicy:
    """Silence-endpoint turn-taking: RESPOND after `endpoint_ms` of silence following speech (baseline)."""

    config_class = VADEndpointPolicyConfig

    def __init__(self, config: VADEndpointPolicyConfig):
        if config.endpoint_ms <= 0:
            raise ValueError(f"vad_endpoint policy: endpoint_ms must be > 0, got {config.endpoint_ms}")
        self.config = config

    def init_state(self) -> TurnState:
        return TurnState()

    def on_chunk(
        self, state: TurnState, *, is_speech: bool, state_probs: Tensor | None = None, chunk_ms: float
    ) -> Decision:
        """``state_probs`` is accepted for the common interface and not used."""
        c = self.config
        state.update(is_speech, chunk_ms)
        decision = Decision.LISTEN
        enough_speech = state.speech_ms >= c.min_speech_ms and state.speech_ms > 0
        if enough_speech and state.silence_ms >= c.endpoint_ms:
            decision = Decision.RESPOND
        elif not enough_speech and c.no_speech_timeout_ms > 0 and state.silence_ms >= c.no_speech_timeout_ms:
            decision = Decision.IGNORE
        if decision.ends_turn:
            state.reset()
        return decision
