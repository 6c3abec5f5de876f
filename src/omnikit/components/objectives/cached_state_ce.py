"""Duplex state head trained on cached LLM states of transcripts: no audio, no LLM backward, one LLM pass per text.

With a CTC connector the frozen LLM reads the user's words as its own tokens, so the state head's inputs at
training time are the LLM's last-layer states over the *transcript*, tokenised as the connector does. They do not
depend on anything that trains, so each text's states are computed once (no gradient) and cached for the whole
stage, keyed by the LLM fingerprint and the token ids; every later step is a linear head on cached vectors.

At inference the LLM reads what the connector *hears*, errors included, not the transcript. ``text: heard`` (or
``both``) trains on that too: the trained encoder (eval mode, frozen in this stage) greedy-decodes each cut's
audio once, the connector tokenises it, and its states are cached like a transcript's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from omnikit.components.adapters.ctc_connector import CTCConnector
from omnikit.components.objectives._speech import encode_speech
from omnikit.data.char_vocab import CharVocab
from omnikit.interfaces import STATES
from omnikit.registry import param

LISTEN, RESPOND, IGNORE = STATES.index("listen"), STATES.index("respond"), STATES.index("ignore")
QUESTION_KINDS = ("fact", "open")


@dataclass
class CachedStateCEConfig:
    class_weights: list[float] | None = param(None, "Per-state loss weights (listen, respond, ignore); None = equal.")
    text: str = param("transcript", "What the LLM reads in training: 'transcript' (the written text), 'heard' (the "
                                    "trained encoder's greedy CTC text of the audio, as the connector hears it at "
                                    "inference), or 'both' (each turn twice).")


TEXT_SOURCES = ("transcript", "heard", "both")


class CachedStateCEObjective:
    """Cross-entropy of ``llm.state_head`` at every token of a transcript, on cached LLM states.

    Labels, per turn text (``batch["text"]``, its kind from ``batch["kind"]``): every token *listen* except the
    last, which is *respond* for a question (kind ``fact`` / ``open``) and *ignore* for anything else (a statement
    not meant for the assistant). The state before the first word (the user-turn prefix, which the session reads
    while nothing has been heard yet) is *listen*. Texts are normalised and tokenised exactly as
    :class:`~omnikit.components.adapters.ctc_connector.CTCConnector` feeds them, so the model slot ``adapter``
    must be one. Logs ``acc`` and ``end_acc`` (accuracy on the last tokens).
    """

    config_class = CachedStateCEConfig

    def __init__(self, config: CachedStateCEConfig, **_: Any):
        if config.text not in TEXT_SOURCES:
            raise ValueError(f"cached_state_ce: text must be one of {TEXT_SOURCES}, got {config.text!r}")
        self.config = config
        # 'transcript' needs no audio; the heard text needs the batch's features once per cut
        self.inputs: tuple[str, ...] = () if config.text == "transcript" else ("feats",)
        self.vocab = CharVocab()
        self._heard: dict[str, list[str]] = {}
        self._states: dict[tuple, Tensor] = {}
        self._fingerprint: str | None = None
        self._prefix: Tensor | None = None

    @torch.no_grad()
    def _heard_words(self, model: torch.nn.ModuleDict, batch: dict[str, Any]) -> list[list[str]]:
        """The words the connector hears in each cut's audio (the encoder in eval mode; computed once per cut:
        the encoder does not train in this stage)."""
        ids = batch["cut_ids"]
        if any(i not in self._heard for i in ids):
            encoder = model["encoder"]
            was_training = encoder.training
            encoder.eval()
            try:
                enc = encode_speech(model, batch)
                states = model["adapter"].read(enc.hidden, enc.lens)
            finally:
                encoder.train(was_training)
            for i, st in zip(ids, states, strict=True):
                self._heard[i] = list(st.words)
        return [self._heard[i] for i in ids]

    @torch.no_grad()
    def _cached(self, llm: Any, id_lists: list[list[int]]) -> list[Tensor]:
        """Last-layer states ``(n, H)`` of each id list as a user turn (computed once per LLM and ids)."""
        if self._fingerprint is None:
            self._fingerprint = llm.fingerprint()
            state = llm.new_conversation()
            llm.start_user_turn(state)
            self._prefix = state.last_hidden.detach().float().cpu()[None]
        keys = [(self._fingerprint, tuple(ids)) for ids in id_lists]
        todo = [i for i, k in enumerate(keys) if k not in self._states]
        if todo:
            lens = torch.tensor([len(id_lists[i]) for i in todo])
            emb = torch.zeros(len(todo), int(lens.max()), llm.hidden_size, dtype=llm.dtype, device=llm.device)
            for row, i in enumerate(todo):
                emb[row, : lens[row]] = llm.embed(id_lists[i])
            hidden = llm.forward_train(emb, lens, None, use_prompt=True).audio_hidden
            for row, i in enumerate(todo):
                self._states[keys[i]] = hidden[row, : lens[row]].detach().float().cpu()
        return [self._states[k] for k in keys]

    def __call__(self, model: torch.nn.ModuleDict, batch: dict[str, Any]) -> dict[str, Tensor]:
        connector = model["adapter"] if "adapter" in model else None
        if not isinstance(connector, CTCConnector):
            raise ValueError("the `cached_state_ce` objective needs model.adapter to be `ctc_connector` (the LLM "
                             "must read transcripts as tokens, the way this objective caches them)")
        llm = model["llm"]
        kinds = batch.get("kind") or [None] * len(batch["text"])
        turns: list[tuple[list[str], Any]] = []
        if self.config.text in ("transcript", "both"):
            turns += [(self.vocab.normalize(t).split(), k) for t, k in zip(batch["text"], kinds, strict=True)]
        if self.config.text in ("heard", "both"):
            turns += list(zip(self._heard_words(model, batch), kinds, strict=True))
        id_lists, ends = [], []
        for words, kind in turns:
            ids = connector.token_ids(words) if words else []
            if ids:
                id_lists.append(ids)
                ends.append(RESPOND if kind in QUESTION_KINDS else IGNORE)
        head = llm.state_head
        if not id_lists:
            return {"loss": head.weight.sum() * 0.0}
        states = self._cached(llm, id_lists)
        labels = []
        for s, end in zip(states, ends, strict=True):
            y = torch.full((s.shape[0],), LISTEN, dtype=torch.long)
            y[-1] = end
            labels.append(y)
        x = torch.cat([self._prefix, *states]).to(head.weight.device, head.weight.dtype)
        y = torch.cat([torch.tensor([LISTEN]), *labels]).to(head.weight.device)
        logits = head(x).float()
        weight = None
        if self.config.class_weights is not None:
            weight = torch.tensor(self.config.class_weights, dtype=logits.dtype, device=logits.device)
        loss = F.cross_entropy(logits, y, weight=weight)
        pred = logits.argmax(-1)
        last = y != LISTEN
        return {"loss": loss, "acc": (pred == y).float().mean(), "end_acc": (pred[last] == y[last]).float().mean()}
