"""A cache of the frozen LLM's conditioning for the speech decoder, so the LLM is not run per training step.

Each assistant answer (or sentence) the decoder trains on needs its frozen token embeddings and, for hidden-state
conditioning, the LLM's teacher-forced last-layer states: the same tensors every epoch. They are stored per item
under a key that names everything that produced them: the LLM fingerprint (a digest of its frozen weights), the
text, and for hidden states also the question and system prompt the LLM was conditioned on. A different LLM, or
a changed text, is a different key, so a stale entry can never be read.

Entries live in memory (bounded, least recently used out first) and, with a ``directory``, in one safetensors file
per key (written atomically), so later runs and other processes reuse them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

FORMAT = 1
"""Bumped when what an entry holds changes (old entries then miss)."""


def conditioning_key(fingerprint: str, text: str, *, hidden: bool = False, question: str | None = None,
                     system_prompt: str | None = None) -> str:
    """Hex key of one item's conditioning. ``question``/``system_prompt`` only count when ``hidden``: token
    embeddings depend on the text alone, the teacher-forced states on everything the LLM read before it."""
    parts: dict[str, Any] = {"v": FORMAT, "llm": fingerprint, "text": text, "hidden": bool(hidden)}
    if hidden:
        parts.update(question=question or "", system=system_prompt or "")
    return hashlib.blake2b(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode(), digest_size=20).hexdigest()


def token_char_weights(tokenizer: Any, ids: Sequence[int]) -> Tensor:
    """A spoken-length proxy per token: its letters and digits, or 1 for a punctuation token (a pause)."""
    out = []
    for i in ids:
        piece = str(tokenizer.decode([int(i)]))
        alnum = sum(c.isalnum() for c in piece)
        out.append(float(alnum) if alnum else (1.0 if piece.strip() else 0.5))
    return torch.tensor(out, dtype=torch.float32)


class ConditioningCache:
    """Per-item LLM conditioning: ``{"text_emb": (n, H), "weights": (n,)[, "hidden": (n, H)]}`` on CPU.

    ``fetch`` returns the entries of a batch of texts, computing only the missing ones (in one batched LLM call).
    Counters ``hits`` and ``misses`` say how often the LLM was spared.
    """

    def __init__(self, directory: str | Path | None = None, max_items: int = 200_000) -> None:
        self.directory = Path(directory).expanduser() if directory else None
        self.max_items = max_items
        self._mem: OrderedDict[str, dict[str, Tensor]] = OrderedDict()
        self._fingerprints: dict[int, str] = {}
        self.hits = self.misses = 0

    # ------------------------------------------------------------------ storage
    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / key[:2] / f"{key}.safetensors"

    def get(self, key: str) -> dict[str, Tensor] | None:
        if key in self._mem:
            self._mem.move_to_end(key)
            return self._mem[key]
        if self.directory is not None and self._path(key).is_file():
            entry = load_file(str(self._path(key)))
            self._remember(key, entry)
            return entry
        return None

    def put(self, key: str, entry: dict[str, Tensor]) -> None:
        entry = {k: v.detach().to("cpu").contiguous() for k, v in entry.items()}
        self._remember(key, entry)
        if self.directory is not None:
            path = self._path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            save_file(entry, str(tmp))
            os.replace(tmp, path)

    def _remember(self, key: str, entry: dict[str, Tensor]) -> None:
        self._mem[key] = entry
        self._mem.move_to_end(key)
        while len(self._mem) > self.max_items:
            self._mem.popitem(last=False)

    def __len__(self) -> int:
        return len(self._mem)

    # ------------------------------------------------------------------ the LLM side
    def fingerprint(self, llm: Any) -> str:
        """``llm.fingerprint()``, computed once per LLM object (it hashes every frozen weight; the stage runner
        checks separately that they never change)."""
        if id(llm) not in self._fingerprints:
            self._fingerprints[id(llm)] = str(llm.fingerprint())
        return self._fingerprints[id(llm)]

    def key(self, llm: Any, text: str, hidden: bool, question: str | None) -> str:
        system = getattr(getattr(llm, "config", None), "system_prompt", None)
        return conditioning_key(self.fingerprint(llm), text, hidden=hidden, question=question, system_prompt=system)

    @torch.no_grad()
    def fetch(self, llm: Any, texts: Sequence[str], use_hidden: bool = False,
              questions: Sequence[str | None] | None = None) -> list[dict[str, Tensor]]:
        """The conditioning of each text, from the cache or computed now (and cached)."""
        from omnikit.components.objectives.codec_token_ce import teacher_forced_hidden

        questions = list(questions) if questions is not None else [None] * len(texts)
        keys = [self.key(llm, t, use_hidden, q) for t, q in zip(texts, questions, strict=True)]
        entries: list[dict[str, Tensor] | None] = [self.get(k) for k in keys]
        missing = [i for i, e in enumerate(entries) if e is None]
        self.hits += len(texts) - len(missing)
        self.misses += len(missing)
        if missing:
            hidden_rows: list[Tensor] = []
            if use_hidden:
                hid, lens = teacher_forced_hidden(llm, [texts[i] for i in missing], [questions[i] for i in missing])
                hidden_rows = [hid[j, : int(lens[j])] for j in range(len(missing))]
            for j, i in enumerate(missing):
                ids = llm.tokenize(texts[i]) or [llm.tokenizer.eos_token_id]
                entry = {"text_emb": llm.embed(ids).float(), "weights": token_char_weights(llm.tokenizer, ids)}
                if use_hidden:
                    entry["hidden"] = hidden_rows[j].float()
                self.put(keys[i], entry)
                entries[i] = self.get(keys[i])
        return [e for e in entries if e is not None]
