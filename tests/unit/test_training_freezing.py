"""Trainable-set selection, eval mode of frozen parts, optimizer groups, LR schedule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from omnikit.config.sections import OptimConfig
from omnikit.training.freezing import (
    TrainableSelectionError,
    apply_trainable,
    check_groups,
    param_groups,
    select_trainable,
    set_train_mode,
)
from omnikit.training.module import lr_factor


def toy() -> nn.ModuleDict:
    block = lambda: nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.LayerNorm(4))  # noqa: E731
    dec = nn.Module()
    dec.prefix = block()
    dec.layers = block()
    return nn.ModuleDict({"encoder": block(), "speech_decoder": dec, "llm": block()})


def test_slot_names_and_regexes_select_parameters():
    m = toy()
    sel = select_trainable(m, ["encoder", r"speech_decoder\.prefix\..*"])
    assert sel == sorted([n for n, _ in m.named_parameters() if n.startswith(("encoder.", "speech_decoder.prefix."))])


def test_bad_patterns_are_reported_together_with_a_suggestion():
    with pytest.raises(TrainableSelectionError) as err:
        select_trainable(toy(), ["encodr", r"speech_decoder\.nothing\..*", "llm"], frozen_slots=["llm"])
    msg = str(err.value)
    assert "'encodr' matches no parameter" in msg and "'encoder'" in msg
    assert "nothing" in msg and "frozen in the recipe" in msg


def test_frozen_subtrees_stay_in_eval_mode_dropout_in_trained_blocks_trains():
    m = toy()
    apply_trainable(m, select_trainable(m, [r"speech_decoder\.prefix\..*"]))
    set_train_mode(m, True)
    assert m["speech_decoder"].prefix.training and m["speech_decoder"].prefix[1].training
    assert not m["speech_decoder"].layers.training and not m["speech_decoder"].layers[1].training
    assert not m["encoder"].training and not m["llm"][1].training
    set_train_mode(m, False)
    assert not m["speech_decoder"].prefix.training


def test_groups_hold_each_trainable_parameter_once():
    m = toy()
    apply_trainable(m, select_trainable(m, ["encoder"]))
    groups = param_groups(m, 0.01)
    check_groups(m, groups)
    decayed = {id(p) for p in groups[0]["params"]}
    assert id(m["encoder"][0].weight) in decayed and id(m["encoder"][0].bias) not in decayed
    with pytest.raises(RuntimeError, match="in 2 optimizer groups"):
        check_groups(m, [*groups, {"params": [m["encoder"][0].weight]}])
    with pytest.raises(RuntimeError, match="frozen llm"):
        check_groups(m, [*groups, {"params": [m["llm"][0].weight]}])


def test_lr_schedule_warms_up_then_decays():
    cos = OptimConfig(lr=1.0, warmup_steps=10, decay="cosine", min_lr_ratio=0.1)
    assert lr_factor(0, cos, 110) == pytest.approx(0.1)
    assert lr_factor(9, cos, 110) == pytest.approx(1.0)
    assert lr_factor(60, cos, 110) == pytest.approx(0.55)
    assert lr_factor(110, cos, 110) == pytest.approx(0.1)
    inv = OptimConfig(warmup_steps=100, decay="inverse_sqrt")
    assert lr_factor(399, inv, 1000) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unknown keys"):
        OptimConfig.from_mapping({"learning_rate": 1.0})


def test_set_train_mode_keeps_fully_frozen_model_in_eval():
    m = toy()
    apply_trainable(m, [])
    set_train_mode(m, True)
    assert not any(mod.training for mod in m.modules())
    assert torch.is_grad_enabled()
