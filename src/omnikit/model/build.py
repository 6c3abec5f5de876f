"""Build the model slots of a recipe, in dependency order, with the sizes that flow between them."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from omnikit.interfaces import FEATURE_DIM
from omnikit.registry import get_registry

WEIGHT_SLOTS = ("codec", "llm", "encoder", "adapter", "speech_decoder")
"""Slots that hold weights, in build order (a slot's build context needs the ones before it).
``duplex_policy`` and ``vad`` are inference-only and are not built for training."""


def slot_args(node: Any) -> dict[str, Any]:
    args = node.get("args") if node is not None else None
    if args is None:
        return {}
    return OmegaConf.to_container(args, resolve=True) if isinstance(args, DictConfig) else dict(args)


def build_context(slot: str, built: dict[str, torch.nn.Module]) -> dict[str, Any]:
    """The build-time sizes a slot receives from its neighbours (see ``omnikit.interfaces``)."""
    def need(other: str) -> torch.nn.Module:
        if other not in built:
            raise ValueError(f"model.{slot} needs model.{other} (for its build-time sizes), which the recipe lacks")
        return built[other]

    if slot == "encoder":
        return {"input_dim": FEATURE_DIM}
    if slot == "adapter":
        # the modules themselves too: a connector adapter reads the encoder's CTC head and the LLM's tokenizer
        encoder, llm = need("encoder"), need("llm")
        return {"in_dim": encoder.output_dim, "out_dim": llm.hidden_size, "encoder": encoder, "llm": llm}
    if slot == "speech_decoder":
        return {"cond_dim": need("llm").hidden_size, "codebook_size": need("codec").codebook_size}
    return {}


def build_model(cfg: DictConfig, device: str | torch.device = "cpu") -> torch.nn.ModuleDict:
    """A ``ModuleDict`` of the recipe's weight-holding slots (absent slots skipped).

    ``device="meta"`` builds every part without allocating weights (dry runs at paper scale). A part whose build
    needs real tensors (it reads packaged weights or a tokenizer, or moves itself to a device) is built normally
    instead; those slots are listed in the returned dict's ``built_with_weights``. Order: codec, llm, encoder
    (``input_dim=80``), adapter (``in_dim=encoder.output_dim, out_dim=llm.hidden_size``), speech_decoder
    (``cond_dim=llm.hidden_size, codebook_size=codec.codebook_size``).
    """
    model_cfg = cfg.get("model") or {}
    built: dict[str, torch.nn.Module] = {}
    with_weights: list[str] = []
    meta = str(device) == "meta"
    for slot in WEIGHT_SLOTS:
        node = model_cfg.get(slot)
        if node is None:
            continue
        registry, args = get_registry(slot), slot_args(node)
        if meta:
            try:
                with torch.device("meta"):
                    module = registry.build(str(node.name), args, **build_context(slot, built))
            except Exception:  # noqa: BLE001 - retried below; a real error raises again there
                # e.g. "Cannot copy out of meta tensor", from_pretrained under a meta context: build it for real
                # (a genuine recipe error raises again here, from the normal build)
                module = registry.build(str(node.name), args, **build_context(slot, built))
                with_weights.append(slot)
        else:
            module = registry.build(str(node.name), args, **build_context(slot, built))
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"model.{slot} ({node.name}) is not a torch.nn.Module")
        built[slot] = module
    model = torch.nn.ModuleDict(built)
    model.built_with_weights = with_weights
    if str(device) not in ("meta", "cpu"):
        model.to(device)
    return model


def count_parameters(module: torch.nn.Module, trainable_only: bool = False) -> int:
    seen: set[int] = set()
    total = 0
    for p in module.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total
