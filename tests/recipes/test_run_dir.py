"""What a newcomer meets first (issue 15): a run directory knows the model it trains and where it lives, hints are
commands that work from any folder, Ctrl-C in a stage exits 130 with a resume command, and the console is quiet.

One tiny smoke stage (2 steps on 8 tone utterances) is trained once for the module."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from typer.testing import CliRunner

from omnikit.cli.app import app

REPO = Path(__file__).resolve().parents[2]
SMOKE = str(REPO / "recipes" / "smoke.yaml")
CLI = [sys.executable, "-c", "from omnikit.cli.app import main; main()"]
TINY = ["data.world.args.num_train=8", "data.world.args.num_dev=2",
        "stages.input_1_ctc.trainer.max_steps=2", "stages.input_2_align.trainer.max_steps=2"]
runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A run dir whose first stage is finished (the rest of the schedule is not)."""
    run = tmp_path_factory.mktemp("first") / "run"
    res = runner.invoke(app, ["run", SMOKE, *TINY, "--stage", "input_1_ctc", "--run-dir", str(run)])
    assert res.exit_code == 0, res.output
    assert (run / "stages" / "input_1_ctc" / "done.json").is_file()
    return run


def test_a_changed_model_in_a_used_run_dir_stops_with_exit_2(trained):
    recipe_before = (trained / "recipe.yaml").read_text()
    res = runner.invoke(app, ["run", SMOKE, *TINY, "model.encoder.args.layers=3", "--stage", "input_1_ctc",
                              "--run-dir", str(trained)])
    assert res.exit_code == 2, res.output
    assert "model.encoder.args.layers is 3 in this recipe but 2 in the finished stage 'input_1_ctc'" in res.output
    assert "--run-dir NEW_FOLDER" in res.output
    assert (trained / "recipe.yaml").read_text() == recipe_before  # the run's recipe is not overwritten
    # where a part runs is not what it is: a placement change continues the run (the stage is skipped)
    res = runner.invoke(app, ["run", SMOKE, *TINY, "model.llm.args.device=auto", "--stage", "input_1_ctc",
                              "--run-dir", str(trained)])
    assert res.exit_code == 0 and "done already" in res.output, res.output


def test_the_hint_for_an_unfinished_stage_works_from_any_folder(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # somewhere else: a relative paths.out (runs/smoke) must not be used
    res = runner.invoke(app, ["chat", str(trained), "--text", "hello"])
    assert res.exit_code == 1, res.output
    hint = re.search(r"`(omnikit run [^`]*)`", res.output)
    assert hint, res.output
    args = shlex.split(hint.group(1))
    assert args[2] == str(trained.resolve() / "recipe.yaml") and "--run-dir" in args
    assert args[-2:] == ["--stage", "input_2_align"]
    res = runner.invoke(app, args[1:])
    assert res.exit_code == 0, res.output
    assert (trained / "stages" / "input_2_align" / "done.json").is_file()
    # and without --run-dir too: a run's own recipe.yaml continues that run, wherever it is run from
    res = runner.invoke(app, ["run", str(trained / "recipe.yaml"), "--stage", "input_2_align"])
    assert res.exit_code == 0 and "done already" in res.output, res.output
    assert list(tmp_path.iterdir()) == []
    record = OmegaConf.load(trained / "run.json")
    assert record.run_dir == str(trained.resolve()) and record.model.encoder.args.layers == 2


def test_ctrl_c_in_a_training_stage_exits_130_with_a_resume_command(tmp_path, monkeypatch):
    from omnikit.training.module import StageModule

    step = StageModule.training_step

    def interrupted_at_step_1(self, batch, batch_idx):
        if self.global_step >= 1:
            raise KeyboardInterrupt
        return step(self, batch, batch_idx)

    monkeypatch.setattr(StageModule, "training_step", interrupted_at_step_1)
    run = tmp_path / "run"
    res = runner.invoke(app, ["run", SMOKE, *TINY, "stages.input_1_ctc.trainer.max_steps=50", "--stage",
                              "input_1_ctc", "--run-dir", str(run)])
    assert res.exit_code == 130, res.output
    assert "interrupted: stage input_1_ctc stopped at step 1" in res.output
    assert f"omnikit run {run.resolve() / 'recipe.yaml'} --run-dir {run.resolve()} --stage input_1_ctc" in res.output
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Lightning's SIG_IGN is undone


def test_stage_output_is_quiet_unless_verbose(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([*CLI, "run", SMOKE, *TINY, "--stage", "input_1_ctc", "--run-dir", str(tmp_path / "r")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    for noise in ("GPU available", "TPU available", "litlogger", "💡", "module(s) in eval mode", "LeafSpec",
                  "100% of the batches"):
        assert noise not in out, noise
    assert "[omnikit] stage input_1_ctc: training" in out
    assert re.search(r"\[omnikit\] stage input_1_ctc: done in \d+\.\d s, 2 steps, loss \S+ -> \S+", out), out


def test_lightning_output_levels_are_restored():
    import logging

    from omnikit.training.runner import lightning_output

    lg = logging.getLogger("lightning.pytorch")
    before = lg.level
    with lightning_output(verbose=False):
        assert lg.getEffectiveLevel() == logging.WARNING
    assert lg.level == before
    with lightning_output(verbose=True):
        assert lg.level == before
