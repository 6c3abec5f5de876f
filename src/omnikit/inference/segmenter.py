"""Streaming text segmentation for the speech output path (spec §4.1, "Chunk Segment").

The LLM's answer arrives one token at a time, each with the last-layer hidden state that produced it. The
segmenter groups them into segments that the speech decoder synthesises one by one: a segment closes at
sentence punctuation, or already at a comma for the first segment of an answer (to start speaking sooner)
and for segments that have grown long. ``clean_segment_text`` normalises a segment's text before it is
re-tokenised and embedded for the decoder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import Tensor

from omnikit.registry import param


@dataclass
class SegmenterConfig:
    """When a streamed answer is cut into speech segments. Lengths count LLM tokens (= hidden states)."""

    min_tokens: int = param(4, "A segment never closes at punctuation before it holds this many tokens.")
    long_tokens: int = param(20, "From this many tokens on, a segment may also close at a comma/colon.")
    max_tokens: int = param(
        100, "Force-close a segment at this many tokens even without punctuation (0 = no limit); 100 text "
        "tokens is roughly the decoder's 1000-codec-token cap."
    )
    first_segment_comma: bool = param(
        True, "The first segment of an answer may close at a comma/colon (lower time to first audio)."
    )
    first_max_tokens: int = param(
        0, "The first segment also closes at the first word boundary once it holds this many tokens, without "
        "punctuation (0 = off; the token that starts the next word opens the next segment)."
    )
    sentence_chars: str = param("。：？！.?!\n", "Characters that close any segment (sentence ends).")
    clause_chars: str = param(
        ",，。：？！.:?!\n", "Characters that close the first segment or a long one (sentence + clause ends)."
    )
    digit_dot_exception: bool = param(True, "A '.' right after a digit does not close (list numbering, 3.5).")


@dataclass
class Segment:
    """One closed segment: its raw text, LLM token ids and the stacked hidden states (n, D) (or None)."""

    text: str
    token_ids: list[int]
    hidden: Tensor | None
    index: int  # position within the answer, 0 = first
    final: bool = False  # produced by flush() at the end of the answer

    @property
    def clean_text(self) -> str:
        return clean_segment_text(self.text)

    def __len__(self) -> int:
        return len(self.token_ids)


@dataclass
class TextSegmenter:
    """Accumulates (text delta, token id, hidden state) triples and emits ``Segment``s; one per user."""

    config: SegmenterConfig = field(default_factory=SegmenterConfig)
    _text: str = ""
    _ids: list[int] = field(default_factory=list)
    _hidden: list[Tensor] = field(default_factory=list)
    _emitted: int = 0  # segments emitted in the current answer

    def push(self, delta_text: str, token_id: int, hidden: Tensor | None = None) -> Segment | None:
        """Add one generated token; return the segment it closes, if any. ``hidden``: (D,), (1, D) or
        (1, 1, D)."""
        cfg = self.config
        if (cfg.first_max_tokens and self._emitted == 0 and len(self._ids) >= cfg.first_max_tokens
                and delta_text[:1].isspace() and self._text.strip()):
            seg = self._emit(final=False)  # cut before the word this token starts
            self._append(delta_text, token_id, hidden)
            return seg
        self._append(delta_text, token_id, hidden)
        if self._should_close(delta_text):
            return self._emit(final=False)
        return None

    def _append(self, delta_text: str, token_id: int, hidden: Tensor | None) -> None:
        self._text += delta_text
        self._ids.append(int(token_id))
        if hidden is not None:
            self._hidden.append(hidden.reshape(-1))

    def flush(self) -> Segment | None:
        """End of answer: return the remainder (if it has any text) and reset for the next answer."""
        seg = self._emit(final=True) if self._text.strip() else None
        self.reset()
        return seg

    def reset(self) -> None:
        """Forget everything (new answer, or barge-in)."""
        self._text, self._ids, self._hidden, self._emitted = "", [], [], 0

    @property
    def pending_tokens(self) -> int:
        return len(self._ids)

    def _should_close(self, delta: str) -> bool:
        cfg, n = self.config, len(self._ids)
        if cfg.max_tokens and n >= cfg.max_tokens:
            return True
        if n < cfg.min_tokens:
            return False
        tail = delta.rstrip(" \t")
        if not tail:
            return False
        first = self._emitted == 0 and cfg.first_segment_comma
        chars = cfg.clause_chars if first or n >= cfg.long_tokens else cfg.sentence_chars
        if tail[-1] not in chars:
            return False
        if cfg.digit_dot_exception and tail[-1] == ".":
            text = self._text.rstrip(" \t")
            if len(text) >= 2 and text[-2].isdigit():
                return False
        return True

    def _emit(self, final: bool) -> Segment:
        hidden = torch.stack(self._hidden) if self._hidden else None
        seg = Segment(self._text, self._ids, hidden, self._emitted, final)
        self._text, self._ids, self._hidden = "", [], []
        self._emitted += 1
        return seg


_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uff00-\uffef]")
_PUNCT_MAP = str.maketrans({"、": "，", "(": ", ", ")": ", ", "（": "，", "）": "，"})
_LIST_ITEM = re.compile(r"(^|\n|[:：]\s*)[ \t]*(\d+)\.[ \t]*(?=[^\d\s])")
_HEADING = re.compile(r"(^|\n)[ \t]*#+[ \t]*")
_MARKDOWN = re.compile(r"[*_`~]")
_FINAL = "。？！.?!"
_WEAK_END = ",，;；:：、"


def clean_segment_text(text: str) -> str:
    """Normalise segment text for the speech decoder (spec §4.1 post-processing).

    Maps 、 and parentheses to commas; rewrites numbered list items ``1. X`` as ``1:X`` (``1：X`` for CJK
    text); strips markdown (``* _ ` ~`` and heading ``#``); joins lines; and guarantees a final ``。？！.?!``
    (a trailing ``,，;；:：、`` is replaced, else one is appended; ``。`` for CJK text, ``.`` otherwise).
    Unlike the released code it joins lines with a space rather than gluing words, and it only removes the
    space after a list number's dot, not after every ``.``/``:`` (which would glue English sentences).
    """
    cjk = bool(_CJK.search(text))
    colon, stop = ("：", "。") if cjk else (":", ".")
    text = text.translate(_PUNCT_MAP)
    text = _HEADING.sub(r"\1", text)
    text = _LIST_ITEM.sub(lambda m: f"{m.group(1)}{m.group(2)}{colon}", text)
    text = _MARKDOWN.sub("", text)
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+([,，])", r"\1", text)  # "word , x" -> "word, x" (parentheses became commas)
    text = re.sub(r"([,，])(\s*[,，])+", r"\1", text)  # doubled commas
    text = re.sub(r"[,，]\s*(?=[。？！.?!])", "", text)  # comma right before a sentence end
    if cjk:  # no spaces next to CJK characters
        text = re.sub(rf"(?<={_CJK.pattern})\s+|\s+(?={_CJK.pattern})", "", text)
    text = text.lstrip(" ,，")
    if not text:
        return ""
    if text[-1] in _WEAK_END:
        text = text[:-1] + stop
    elif text[-1] not in _FINAL:
        text += stop
    return text
