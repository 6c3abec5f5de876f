"""Deterministic train/dev/test assignment by a stable hash of a key (an entity, a topic, a module).

Python's ``hash`` changes between processes, so keys are hashed with SHA-1: the same seed and key give the
same split on every machine.
"""

from __future__ import annotations

import hashlib

import numpy as np

SPLITS = ("train", "dev", "test")


def stable_int(*parts: object) -> int:
    """A 63-bit integer digest of ``parts`` (stable across processes and machines)."""
    digest = hashlib.sha1("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def rng_for(seed: int, *key: object) -> np.random.Generator:
    """A generator determined by the seed and a key, independent of the order in which items are built."""
    return np.random.default_rng([seed, stable_int(*key)])


def split_of(key: str, seed: int, dev_fraction: float, test_fraction: float) -> str:
    """``train``, ``dev`` or ``test`` for ``key``; the same key always lands in the same split."""
    u = (stable_int("split", seed, key) % 1_000_000) / 1_000_000
    if u < test_fraction:
        return "test"
    if u < test_fraction + dev_fraction:
        return "dev"
    return "train"
