"""A digest of a module's weights, to prove that frozen weights stayed bit-identical."""

from __future__ import annotations

import hashlib

import torch
from torch import nn


def llm_fingerprint(module: nn.Module) -> str:
    """Hex digest over every parameter and persistent buffer of ``module`` (names, dtypes, shapes, bytes).

    Hashes raw tensor bytes, so a single changed bit changes the digest. Meta tensors (dry runs) contribute
    only their name, dtype and shape.
    """
    digest = hashlib.blake2b(digest_size=20)
    tensors = dict(module.named_parameters())
    tensors.update(module.state_dict(keep_vars=True))  # adds persistent buffers; tied weights once by name
    seen: set[int] = set()
    for name in sorted(tensors):
        tensor = tensors[name]
        if not isinstance(tensor, torch.Tensor):
            continue
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        if tensor.is_meta or id(tensor) in seen:
            continue
        seen.add(id(tensor))
        data = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()
