"""A tiny trained smoke run, made once per test session, and a dialogue model over it for the serving tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "recipes" / "smoke.yaml"
STAGES = ["input_1_ctc", "input_2_align", "input_3_dialogue", "output_1_codec", "output_2_decoder", "output_3_prefix"]
TINY = ["data.world.args.num_train=8", "data.world.args.num_dev=2",
        *(f"stages.{s}.trainer.max_steps=2" for s in STAGES)]


def _finished(run: Path) -> bool:
    return all((run / "stages" / s / "done.json").is_file() for s in STAGES)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """The smoke recipe's six stages at 2 steps each on 8 tone utterances (about a minute on two cores); a
    finished run named by ``OMNIKIT_SMOKE_RUN`` is used instead when there is one."""
    given = os.environ.get("OMNIKIT_SMOKE_RUN")
    if given and _finished(Path(given)):
        return Path(given)
    from omnikit.cli.app import app

    run = tmp_path_factory.mktemp("smoke") / "run"
    res = CliRunner().invoke(app, ["run", str(SMOKE), *TINY, "--run-dir", str(run)])
    assert res.exit_code == 0, res.output
    assert _finished(run)
    return run


@pytest.fixture(scope="session")
def serve_model(smoke_run):
    """The trained smoke run with an energy VAD and the VAD-endpoint policy (a barely trained state head decides
    nothing reliably; a tone burst followed by 480 ms of silence is a RESPOND), greedy and short answers."""
    from omnikit.inference.dialogue_model import DialogueModel
    from omnikit.model.checkpoints import merged_weights

    cfg = OmegaConf.load(smoke_run / "recipe.yaml")
    cfg.model.vad = OmegaConf.create({"name": "energy", "args": {}})  # replace the nodes, not merge args
    cfg.model.duplex_policy = OmegaConf.create({"name": "vad_endpoint", "args": {"endpoint_ms": 480}})
    cfg.inference = OmegaConf.merge(cfg.inference, {
        "greedy": True, "max_answer_tokens": 6, "decoder_max_tokens": 30, "first_chunk": 5, "chunk": 10,
        "codec_context": 2, "speech_tracker": {"pre_roll_chunks": 2, "min_silence_ms": 3000}})
    return DialogueModel.from_recipe(cfg, merged_weights(smoke_run, list(cfg.schedule)))
