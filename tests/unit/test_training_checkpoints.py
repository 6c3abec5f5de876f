"""Stage hand-off: safetensors of what a stage trained, init from it, done markers."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from omnikit.model.checkpoints import (
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


def test_run_record_refuses_a_changed_model_for_an_interrupted_stage(tmp_path):
    """``run.json`` holds the model an interrupted stage (a Lightning checkpoint, no ``done.json``) trains."""
    from pathlib import Path

    from omnikit.config import RunDirConflict, load_recipe
    from omnikit.model.checkpoints import check_run_dir, model_spec, write_run_record

    smoke = Path(__file__).resolve().parents[2] / "recipes" / "smoke.yaml"
    cfg = load_recipe(smoke)
    check_run_dir(cfg, tmp_path / "fresh")  # nothing trained yet: anything goes
    write_run_record(cfg, tmp_path)
    ckpt = tmp_path / "stages" / "output_2_decoder" / "lightning" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"")
    check_run_dir(cfg, tmp_path)
    check_run_dir(load_recipe(smoke, ["model.llm.args.device=auto"]), tmp_path)  # placement is not the model
    # a default written out is the same model
    assert model_spec(load_recipe(smoke, ["model.encoder.args.subsampling_channels=0"])) == model_spec(cfg)
    with pytest.raises(RunDirConflict, match=r"model\.speech_decoder\.args\.dim is 48 in this recipe but 32 in "
                                             r"the interrupted stage 'output_2_decoder'"):
        check_run_dir(load_recipe(smoke, ["model.speech_decoder.args.dim=48"]), tmp_path)
    with pytest.raises(RunDirConflict, match=r"model\.codec\.name is \"waveform_vq\" in this recipe but \"mel_vq\""):
        check_run_dir(load_recipe(smoke, ["model.codec.name=waveform_vq"]), tmp_path)
