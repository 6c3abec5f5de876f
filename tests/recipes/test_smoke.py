"""The smoke recipe end to end (six stages on the synthetic tone world), kill-and-resume, and dry runs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from omnikit.config import load_recipe, validate_recipe
from omnikit.model.build import build_model
from omnikit.training.runner import StageError, run_recipe

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "recipes" / "smoke.yaml"
PAPER = REPO / "recipes" / "freeze_omni.yaml"
CLI = [sys.executable, "-c", "from omnikit.cli.app import main; main()"]


def test_freeze_omni_dry_run_builds_paper_scale_on_meta(capsys, tmp_path):
    cfg = load_recipe(PAPER)
    validate_recipe(cfg)
    run_recipe(cfg, tmp_path, dry_run=True)
    table = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in table.splitlines()[3:]}
    assert rows["encoder"][2] == "358.0M" and rows["adapter"][2] == "17.8M"
    assert rows["speech_decoder"][2] == "164.7M" and rows["llm"][2] == "7.6B"
    # per stage: the encoder trains in input 1-2 only; stage 3 trains 25x3584 prompt + 3584x3+3 state head
    assert rows["encoder"][3:] == ["358.0M", "358.0M", "-", "-", "-", "-"]
    assert rows["llm"][3:] == ["-", "-", "100.4K", "-", "-", "-"]
    assert rows["speech_decoder"][3:] == ["-", "-", "-", "-", "99.6M", "65.1M"]
    assert not any(tmp_path.iterdir())  # a dry run writes nothing


@pytest.mark.parametrize("name", ["smoke.yaml", "quickstart.yaml"])
def test_dry_run_of_the_shipped_recipes_through_the_cli(name, tmp_path, monkeypatch):
    """Getting-started dry-runs a copy of smoke.yaml; parts that must read real weights or a tokenizer at build
    time (the smoke LLM moved to its device, the quickstart's packaged LLM, Whisper encoder and CTC connector)
    are loaded for real, the rest stays on the meta device."""
    from typer.testing import CliRunner

    from omnikit.cli.app import app

    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(app, ["cp", name, "mine.yaml"]).exit_code == 0
    res = CliRunner().invoke(app, ["run", "mine.yaml", "--dry-run"])
    assert res.exit_code == 0, res.output
    rows = {line.split()[0]: line.split() for line in res.output.splitlines() if line.split()}
    cfg = load_recipe(tmp_path / "mine.yaml")
    assert rows["total"][1] != "-" and len(rows["total"]) == 2 + len(cfg.schedule)
    assert "loaded for real: llm" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.yaml"]  # a dry run writes nothing


def test_init_from_a_later_stage_is_rejected(tmp_path):
    cfg = load_recipe(SMOKE, ["stages.input_1_ctc.init.adapter=stage:input_2_align"])
    with pytest.raises(StageError, match="not an earlier stage"):
        run_recipe(cfg, tmp_path, dry_run=True)


def test_smoke_recipe_trains_every_stage_and_keeps_frozen_parts(tmp_path):
    cfg = load_recipe(SMOKE)
    validate_recipe(cfg)
    run_recipe(cfg, tmp_path)
    schedule = list(cfg.schedule)
    llm_only = OmegaConf.create({"model": {"llm": OmegaConf.to_container(cfg.model.llm, resolve=True)}})
    fresh_llm = build_model(llm_only)["llm"].fingerprint()
    expected_keys = {
        "input_1_ctc": ("encoder.",),
        "input_2_align": ("encoder.", "adapter."),
        "input_3_dialogue": ("llm.prompt_embeddings", "llm.state_head."),
        "output_1_codec": ("codec.",),
        "output_2_decoder": ("speech_decoder.prenet.", "speech_decoder.embed.", "speech_decoder.layers.",
                             "speech_decoder.norm.", "speech_decoder.head."),
        "output_3_prefix": ("speech_decoder.prefix.",),
    }
    for stage in schedule:
        out = tmp_path / "stages" / stage
        done = json.loads((out / "done.json").read_text())
        assert done["steps"] == cfg.stages[stage].trainer.max_steps
        assert done["llm_fingerprint"] == fresh_llm, f"{stage} changed the frozen LLM"
        # same dev cuts before the first and after the last step: did the stage learn?
        assert done["val_loss_end"] < done["val_loss_start"], f"{stage}: dev loss did not go down ({done})"
        keys = set(load_file(str(out / "trained.safetensors")))
        assert keys and all(k.startswith(expected_keys[stage]) for k in keys), (stage, sorted(keys)[:5])
        assert (out / "recipe.yaml").is_file() and not (out / "lightning").exists()
        assert (tmp_path / "logs" / stage / "metrics.csv").is_file()
    assert (tmp_path / "cmvn.json").is_file()
    # output 3 trained only the prefix: the rest of its decoder (frozen) is bit-identical to output 2's result
    from omnikit.model.checkpoints import load_slot
    from omnikit.training.freezing import apply_trainable, select_trainable
    from omnikit.training.runner import frozen_digest

    model = build_model(cfg)
    load_slot(model, "speech_decoder", tmp_path / "stages" / "output_2_decoder" / "trained.safetensors")
    apply_trainable(model, select_trainable(model, [r"speech_decoder\.prefix\..*"]))
    o3 = json.loads((tmp_path / "stages" / "output_3_prefix" / "done.json").read_text())
    assert frozen_digest(model)["speech_decoder"] == o3["frozen_digest"]["speech_decoder"]
    # re-running skips finished stages (nothing is retrained)
    stamp = (tmp_path / "stages" / "input_1_ctc" / "done.json").stat().st_mtime_ns
    run_recipe(cfg, tmp_path)
    assert (tmp_path / "stages" / "input_1_ctc" / "done.json").stat().st_mtime_ns == stamp


def _loadable_step(ckpt):
    try:
        return torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"]
    except Exception:  # a checkpoint still being written
        return None


def test_killed_stage_resumes_to_the_same_step_count(tmp_path):
    # Many cheap steps so that the kill lands mid-stage even on a fast machine (a smoke step is ~20 ms).
    steps = 1000
    cmd = [*CLI, "run", str(SMOKE), "--stage", "input_1_ctc", "--run-dir", str(tmp_path),
           f"stages.input_1_ctc.trainer.max_steps={steps}", "stages.input_1_ctc.trainer.checkpoint_every_n_steps=4",
           "stages.input_1_ctc.trainer.val_check_interval=100000"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "stages" / "input_1_ctc" / "lightning" / "last.ckpt"
    deadline = time.time() + 240
    try:
        while not ckpt.is_file() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert ckpt.is_file(), "no Lightning checkpoint appeared before the deadline"
        # Freeze the process, make sure the checkpoint on disk is complete, then kill it without warning.
        while True:
            os.kill(proc.pid, signal.SIGSTOP)
            if (_loadable_step(ckpt) or 0) >= 12 or time.time() > deadline:  # >= 12: loss_start checked below
                break
            os.kill(proc.pid, signal.SIGCONT)
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (tmp_path / "stages" / "input_1_ctc" / "done.json").exists()
    killed_at = _loadable_step(ckpt)
    assert killed_at is not None, "the last checkpoint could not be read after the kill"
    assert 0 < killed_at < steps
    ckpt_copy = tmp_path / "killed.ckpt"  # the resumed run deletes its Lightning checkpoints when done
    shutil.copy(ckpt, ckpt_copy)
    subprocess.run(cmd, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=400)
    done = json.loads((tmp_path / "stages" / "input_1_ctc" / "done.json").read_text())
    assert done["resumed"] is True and done["steps"] == steps
    # the loss curve and the wall time include the part before the kill (carried in the checkpoint)
    first_run = torch.load(ckpt_copy, map_location="cpu", weights_only=True)["callbacks"]["LossHistory"]
    assert len(first_run["steps"]) >= killed_at and done["seconds"] > first_run["seconds"] > 0
    first_losses = [v for _, v in first_run["steps"][:10]]  # done.json's loss_start: mean of the first 10 steps
    assert len(first_losses) == 10 and done["loss_start"] == pytest.approx(sum(first_losses) / 10)
