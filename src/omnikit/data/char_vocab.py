"""English character vocabulary for CTC: blank, space, apostrophe, a-z, 0-9."""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Sequence

import torch
from torch import Tensor

BLANK = 0


class CharVocab:
    """Character vocabulary for CTC (blank = 0; 39 symbols by default).

    Normalisation before encoding: Unicode NFKD with accents stripped (``café`` -> ``cafe``), lowercase,
    typographic apostrophes to ``'``, hyphens/dashes/underscores/slashes to spaces, every other unknown
    character dropped, runs of spaces collapsed and the ends trimmed.
    """

    def __init__(self, symbols: Sequence[str] | None = None):
        if symbols is None:
            symbols = [" ", "'", *string.ascii_lowercase, *string.digits]
        if len(set(symbols)) != len(symbols) or any(len(s) != 1 for s in symbols):
            raise ValueError("vocabulary symbols must be distinct single characters")
        self.symbols = ["<blank>", *symbols]
        self._index = {s: i for i, s in enumerate(self.symbols) if i != BLANK}

    @property
    def size(self) -> int:
        """Number of CTC classes including blank (the encoder's ``ctc_vocab``)."""
        return len(self.symbols)

    def __len__(self) -> int:
        return self.size

    def normalize(self, text: str) -> str:
        text = unicodedata.normalize("NFKD", text)
        text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
        text = re.sub(r"[\u2018\u2019\u02bc`]", "'", text)
        text = re.sub(r"[-\u2010-\u2015_/]", " ", text)
        text = "".join(ch for ch in text if ch in self._index or ch.isspace())
        return re.sub(r"\s+", " ", text).strip()

    def encode(self, text: str) -> list[int]:
        return [self._index[ch] for ch in self.normalize(text)]

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        """Ids to text, skipping blanks (no CTC collapse; see :meth:`greedy_decode`)."""
        if isinstance(ids, Tensor):
            ids = ids.tolist()
        return "".join(self.symbols[i] for i in ids if i != BLANK and 0 < i < self.size)

    def greedy_decode(self, logits: Tensor, lens: Tensor | None = None) -> list[str]:
        """Best-path CTC decoding of ``(B, T, V)`` logits: argmax, collapse repeats, drop blanks."""
        best = logits.argmax(-1)
        texts = []
        for b in range(best.shape[0]):
            seq = best[b, : int(lens[b])] if lens is not None else best[b]
            if seq.numel() == 0:
                texts.append("")
                continue
            keep = torch.ones_like(seq, dtype=torch.bool)
            keep[1:] = seq[1:] != seq[:-1]
            texts.append(self.decode(seq[keep]).strip())
        return texts
