"""The per-session conversation state of the frozen LLM: its KV cache and where the turn stands."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor


@dataclass
class LLMState:
    """One conversation. Owned by the caller (a session); the model keeps no per-user state.

    ``role`` is the open turn: ``system`` after the prefill, ``user`` while audio or text is appended,
    ``assistant`` while generating.
    """

    cache: Any  # a transformers Cache (DynamicCache), updated in place
    length: int = 0  # positions held by the cache
    role: str = "system"
    system_prompt: str = ""
    last_hidden: Tensor | None = None  # (H,) last-layer hidden state at the newest position
    generated: list[int] = field(default_factory=list)  # token ids of the current assistant turn

    def fork(self) -> LLMState:
        """An independent copy: the cache tensors are copied once, here, never per token."""
        return LLMState(
            cache=copy.deepcopy(self.cache),
            length=self.length,
            role=self.role,
            system_prompt=self.system_prompt,
            last_hidden=self.last_hidden,
            generated=list(self.generated),
        )
