"""CTC connector: the encoder's character CTC posteriors become the frozen LLM's own token embeddings.

The CPU path's adapter (DESIGN.md, "Two training paths"). Nothing in it is trained: the encoder learns CTC, and the
LLM reads the text it spells in its own tokenisation, so any LLM works unchanged and no step of training needs an
LLM pass (LegoSLM, arXiv 2505.11352; CTC compression as in Speech-LLaMA).

Per encoder frame: argmax of the CTC head, repeats merged, blanks dropped (greedy CTC, also across chunk
boundaries through :class:`CTCConnectorState`). Characters build the current word; a word is *closed* by a space or
by ``close_after_blanks`` blank frames in a row (a pause: the end of a question is heard within that many frames,
without a look-ahead). A closed word is tokenised by the LLM's tokenizer (with a leading space after the first
word of the turn, as written text) and its token embeddings are emitted: one embedding per LLM token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from omnikit.data.char_vocab import BLANK, CharVocab
from omnikit.registry import param


@dataclass
class CTCConnectorConfig:
    close_after_blanks: int = param(
        3, "Blank encoder frames in a row that close the word being spelled (a pause ends the last word)."
    )
    capitalize_first: bool = param(True, "Upper-case the turn's first letter, as a written question starts.")


@dataclass
class CTCConnectorState:
    """Per-turn streaming state: greedy-CTC memory and the word being spelled."""

    prev: int = BLANK  # argmax of the previous frame (repeats merge across chunks)
    word: str = ""  # characters of the open word
    blanks: int = 0  # blank frames since the last character
    words: list[str] = field(default_factory=list)  # closed words, in order (what the LLM has read)

    @property
    def text(self) -> str:
        return " ".join(self.words)


class CTCConnector(nn.Module):
    """Encoder frames -> greedy character CTC -> words -> the LLM's token embeddings (one per token).

    Build context: ``encoder`` (its ``ctc_head`` maps the encoder output to CTC logits) and ``llm`` (its
    ``tokenize`` and frozen ``embed``). Neither becomes a sub-module: the connector holds no weights, so stages
    and checkpoints never see the encoder or the LLM twice.

    ``forward`` runs the streaming logic over each whole utterance and then closes the open word (the utterance
    has ended), so ``forward`` equals the concatenated ``forward_chunk`` outputs followed by :meth:`flush`.
    """

    config_class = CTCConnectorConfig

    def __init__(self, config: CTCConnectorConfig, in_dim: int, out_dim: int, encoder: Any = None,
                 llm: Any = None, **_: object):
        super().__init__()
        if config.close_after_blanks < 1:
            raise ValueError(f"close_after_blanks must be >= 1, got {config.close_after_blanks}")
        if encoder is None or getattr(encoder, "ctc_head", None) is None:
            raise ValueError("ctc_connector needs an encoder with a CTC head (model.encoder.args.ctc_vocab > 0)")
        if llm is None:
            raise ValueError("ctc_connector needs model.llm (its tokenizer and token embeddings)")
        self.config = config
        self.in_dim, self.out_dim = in_dim, out_dim
        self.vocab = CharVocab()
        if encoder.ctc_vocab_size != self.vocab.size:
            raise ValueError(f"ctc_connector reads the {self.vocab.size}-symbol character vocabulary; the encoder's "
                             f"CTC head has {encoder.ctc_vocab_size} outputs (set model.encoder.args.ctc_vocab)")
        self._parts = (encoder, llm)  # a tuple: not registered as sub-modules

    # ------------------------------------------------------------------ text side
    def frame_ids(self, x: Tensor) -> Tensor:
        """Argmax CTC ids of encoder frames ``(..., T, in_dim)``."""
        encoder = self._parts[0]
        return encoder.ctc_head(x).argmax(-1)

    def _read(self, ids: list[int], state: CTCConnectorState) -> tuple[list[str], CTCConnectorState]:
        """Advance the greedy CTC over frame ids; returns the words closed on the way and the new state."""
        prev, word, blanks = state.prev, state.word, state.blanks
        closed: list[str] = []
        for i in ids:
            if i == BLANK:
                blanks += 1
                if word and blanks >= self.config.close_after_blanks:
                    closed.append(word)
                    word = ""
            elif i != prev:
                blanks = 0
                ch = self.vocab.symbols[i]
                if ch == " ":
                    if word:
                        closed.append(word)
                    word = ""
                else:
                    word += ch
            else:
                blanks = 0
            prev = i
        return closed, CTCConnectorState(prev, word, blanks, state.words + closed)

    def token_ids(self, words: list[str], before: int = 0) -> list[int]:
        """LLM token ids of ``words`` following ``before`` words of the turn (a leading space after the first)."""
        llm = self._parts[1]
        ids: list[int] = []
        for k, w in enumerate(words):
            if before + k == 0:
                ids += llm.tokenize(w[:1].upper() + w[1:] if self.config.capitalize_first else w)
            else:
                ids += llm.tokenize(" " + w)
        return ids

    def _embed(self, words: list[str], before: int, like: Tensor) -> Tensor:
        """Token embeddings ``(1, n, out_dim)`` of ``words`` following ``before`` words of the turn."""
        ids = self.token_ids(words, before)
        if not ids:
            return like.new_zeros(1, 0, self.out_dim)
        return self._parts[1].embed(ids)[None].to(like.dtype)

    # ------------------------------------------------------------------ adapter API
    def init_state(self) -> CTCConnectorState:
        return CTCConnectorState()

    def forward_chunk(self, x: Tensor, state: CTCConnectorState) -> tuple[Tensor, CTCConnectorState]:
        """``(1, t, in_dim)`` encoder frames -> ``(1, n, out_dim)`` token embeddings (``n`` is often 0)."""
        if x.shape[0] != 1:
            raise ValueError(f"ctc_connector streams one conversation at a time, got batch {x.shape[0]}")
        closed, new = self._read(self.frame_ids(x)[0].tolist(), state)
        return self._embed(closed, len(state.words), x), new

    def flush(self, state: CTCConnectorState) -> tuple[Tensor, CTCConnectorState]:
        """Close the open word (the input has ended): its embeddings and the final state."""
        encoder = self._parts[0]
        like = encoder.ctc_head.weight
        if not state.word:
            return like.new_zeros(1, 0, self.out_dim), state
        new = CTCConnectorState(BLANK, "", 0, state.words + [state.word])
        return self._embed([state.word], len(state.words), like), new

    def read(self, x: Tensor, lens: Tensor) -> list[CTCConnectorState]:
        """The final state (text heard) of each utterance of a batch, open words closed."""
        ids = self.frame_ids(x)
        out = []
        for b in range(x.shape[0]):
            closed, st = self._read(ids[b, : int(lens[b])].tolist(), CTCConnectorState())
            if st.word:
                st = CTCConnectorState(BLANK, "", 0, st.words + [st.word])
            out.append(st)
        return out

    def forward(self, x: Tensor, lens: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, T, in_dim)`` -> ``(B, N, out_dim)`` token embeddings of each utterance's text, and ``N`` per row."""
        rows = [self._embed(st.words, 0, x)[0] for st in self.read(x, lens)]
        n = torch.tensor([r.shape[0] for r in rows], dtype=torch.long, device=x.device)
        out = x.new_zeros(x.shape[0], int(n.max()) if len(rows) else 0, self.out_dim)
        for b, r in enumerate(rows):
            out[b, : r.shape[0]] = r
        return out, n

    def transcript(self, x: Tensor, lens: Tensor) -> list[str]:
        """What the LLM reads for each utterance (lower-case words, before capitalisation)."""
        return [st.text for st in self.read(x, lens)]
