"""Stage hand-off: safetensors of what a stage trained, init from it, done markers."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from omnikit.training.checkpoints import (
    is_done,
    load_slot,
    mark_done,
    merged_weights,
    resolve_init,
    save_stage,
    stage_dir,
)
from omnikit.training.freezing import apply_trainable, select_trainable


def model() -> nn.ModuleDict:
    enc = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    dec = nn.Module()
    dec.prefix = nn.Linear(3, 3)
    dec.layers = nn.Linear(3, 3)
    return nn.ModuleDict({"encoder": enc, "speech_decoder": dec})


def test_stage_saves_only_what_it_trained_and_hands_it_on(tmp_path):
    m = model()
    sel = select_trainable(m, ["encoder", r"speech_decoder\.prefix\..*"])
    apply_trainable(m, sel)
    with torch.no_grad():
        m["encoder"][1].running_mean.fill_(3.0)
    path = save_stage(tmp_path, "s1", m, sel, ["encoder"], OmegaConf.create({"name": "x"}))
    from safetensors.torch import load_file

    keys = set(load_file(str(path)))
    assert "encoder.1.running_mean" in keys and "speech_decoder.prefix.weight" in keys
    assert not any(k.startswith("speech_decoder.layers") for k in keys)
    assert (stage_dir(tmp_path, "s1") / "recipe.yaml").is_file()

    with pytest.raises(FileNotFoundError, match="has not finished"):
        resolve_init("stage:s1", tmp_path)
    mark_done(tmp_path, "s1", {"steps": 1})
    assert is_done(tmp_path, "s1")

    fresh = model()
    loaded = load_slot(fresh, "encoder", resolve_init("stage:s1", tmp_path))
    assert "encoder.0.weight" in loaded
    assert torch.equal(fresh["encoder"][0].weight, m["encoder"][0].weight)
    assert torch.all(fresh["encoder"][1].running_mean == 3.0)
    # partial slot: only the prefix comes from s1, the shared layers keep their own init
    layers_before = fresh["speech_decoder"].layers.weight.clone()
    load_slot(fresh, "speech_decoder", resolve_init("stage:s1", tmp_path))
    assert torch.equal(fresh["speech_decoder"].prefix.weight, m["speech_decoder"].prefix.weight)
    assert torch.equal(fresh["speech_decoder"].layers.weight, layers_before)
    assert set(merged_weights(tmp_path, ["s1", "missing"])) == keys


def test_init_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="expected 'stage:<name>'"):
        resolve_init("weights.bin", tmp_path)
    m = model()
    apply_trainable(m, select_trainable(m, ["encoder"]))
    save_stage(tmp_path, "enc", m, select_trainable(m, ["encoder"]), ["encoder"], OmegaConf.create({}))
    with pytest.raises(ValueError, match="no weights for slot 'speech_decoder'"):
        load_slot(m, "speech_decoder", stage_dir(tmp_path, "enc") / "trained.safetensors")
