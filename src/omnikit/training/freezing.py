"""Which parameters a stage trains: selection by slot names or parameter-name regexes; everything else frozen.

A pattern equal to a slot name (``encoder``) selects that whole slot; any other pattern is a regular expression
matched against the full parameter name (``speech_decoder\\.prefix\\..*``, ``llm\\.prompt_embeddings``).
Frozen modules are kept in eval mode (no dropout, no batch-norm updates) while the trainable ones train, and
the optimizer groups are checked to hold every trainable parameter exactly once and no frozen one.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence

import torch
from torch import nn


class TrainableSelectionError(ValueError):
    """A stage's ``trainable`` list is wrong (names the pattern and what it could have meant)."""


def select_trainable(
    model: nn.ModuleDict, patterns: Sequence[str], frozen_slots: Iterable[str] = ()
) -> list[str]:
    """Names of the parameters the patterns select (sorted). Every pattern must select something.

    ``frozen_slots`` (slots marked ``trainable: false`` in the recipe, e.g. the LLM) cannot be named whole;
    a regex may still reach the speech-side parameters they own (prompt embeddings, state head).
    """
    names = [n for n, _ in model.named_parameters()]
    frozen_slots = set(frozen_slots)
    selected: set[str] = set()
    problems: list[str] = []
    for pat in patterns:
        if pat in model:
            if pat in frozen_slots:
                problems.append(f"'{pat}' is frozen in the recipe (model.{pat}.trainable: false); "
                                f"name its trainable parameters with a regex instead")
                continue
            hits = [n for n in names if n.startswith(pat + ".")]
        else:
            try:
                rx = re.compile(pat)
            except re.error as err:
                problems.append(f"'{pat}' is not a slot name or a valid regex ({err})")
                continue
            hits = [n for n in names if rx.fullmatch(n)]
        if not hits:
            close = difflib.get_close_matches(pat, list(model.keys()) + names, n=2, cutoff=0.5)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            problems.append(f"'{pat}' matches no parameter (slots: {', '.join(model.keys())}){hint}")
        selected.update(hits)
    if problems:
        raise TrainableSelectionError("trainable: " + "; ".join(problems))
    return sorted(selected)


def apply_trainable(model: nn.Module, selected: Iterable[str]) -> None:
    """``requires_grad`` True exactly for ``selected`` parameter names."""
    selected = set(selected)
    for name, p in model.named_parameters():
        p.requires_grad_(name in selected)


def _has_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters())


def _has_trainable(m: nn.Module) -> bool:
    return any(p.requires_grad for p in m.parameters())


def set_train_mode(module: nn.Module, mode: bool = True) -> None:
    """``module.train(mode)``, then eval mode for every maximal sub-tree without trainable parameters.

    Parameter-free modules (dropout, activations) follow their parent: dropout inside a trained layer stays on,
    dropout inside a frozen block is off.
    """
    module.train(mode)
    if not mode:
        return

    def visit(m: nn.Module) -> None:
        for child in m.children():
            if not _has_params(child):
                continue
            if _has_trainable(child):
                visit(child)
            else:
                child.eval()

    if not _has_trainable(module):
        module.eval()
    else:
        visit(module)


def no_decay(name: str, p: torch.Tensor) -> bool:
    """Biases, norms and 1-D tensors get no weight decay; so do embedding tables and prompt vectors."""
    lname = name.lower()
    return p.ndim < 2 or "norm" in lname or "embed" in lname or lname.endswith(".bias")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups of the trainable parameters: with and without weight decay."""
    decay, plain = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (plain if no_decay(name, p) else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def check_groups(model: nn.Module, groups: Sequence[dict]) -> None:
    """Every trainable parameter in exactly one group, no frozen parameter in any (fail loudly)."""
    names = {id(p): n for n, p in model.named_parameters()}
    count: dict[int, int] = {}
    for g in groups:
        for p in g["params"]:
            count[id(p)] = count.get(id(p), 0) + 1
    problems = []
    for n, p in model.named_parameters():
        c = count.get(id(p), 0)
        if p.requires_grad and c != 1:
            problems.append(f"trainable {n} is in {c} optimizer groups")
        if not p.requires_grad and c:
            problems.append(f"frozen {n} is in an optimizer group")
    unknown = [i for i in count if i not in names]
    if unknown:
        problems.append(f"{len(unknown)} optimizer parameters are not part of the model")
    if problems:
        raise RuntimeError("optimizer groups are wrong: " + "; ".join(problems[:10]))
