"""``recipes/smoke_ddp.yaml``: the smoke recipe's first two stages under Lightning DDP on CPU, two processes
(gloo) started by ``omnikit run`` itself.

One run (``input_1_ctc`` hands its encoder to ``input_2_align``) is killed with SIGKILL mid-stage and run again.
Checked: both ranks trained every step, only rank 0 wrote Lightning checkpoints, stage weights and
``done.json`` (the CLI runs under ``ddp_audit.py``, which records each write and its rank), the frozen LLM is
bit-identical to a fresh one, the killed stage resumed from its checkpoint to ``max_steps``, and the loss fell
as in a single-process run of ``smoke.yaml`` with the same global batch (2 ranks x 3 s = 1 x 6 s of audio).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from omnikit.config import load_recipe
from omnikit.model.build import build_model
from omnikit.training.runner import run_recipe

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "recipes" / "smoke.yaml"
SMOKE_DDP = REPO / "recipes" / "smoke_ddp.yaml"
AUDIT = Path(__file__).with_name("ddp_audit.py")
STAGES = ["input_1_ctc", "input_2_align"]
STEPS = 30  # input_1_ctc; the kill lands after its first checkpoint at step 8 or later
SHORTER = [f"stages.input_1_ctc.trainer.max_steps={STEPS}", "stages.input_1_ctc.trainer.val_check_interval=100000"]
KILLABLE = [*SHORTER, "stages.input_1_ctc.trainer.checkpoint_every_n_steps=4",
            "stages.input_2_align.trainer.max_steps=6", "stages.input_2_align.trainer.val_check_interval=6",
            *(f"stages.{s}.trainer.enable_progress_bar=false" for s in STAGES)]


def _step(ckpt: Path) -> int | None:
    try:
        return int(torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"])
    except Exception:  # not there yet, or still being written
        return None


def _audit(folder: Path) -> list[dict]:
    return [json.loads(line) for f in sorted(folder.glob("*.jsonl")) for line in f.read_text().splitlines()]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    run_dir, audit = tmp / "run", tmp / "audit"
    cmd = [sys.executable, str(AUDIT), "run", str(SMOKE_DDP), "--run-dir", str(run_dir), *KILLABLE]
    env = {**os.environ, "OMNIKIT_AUDIT_DIR": str(audit), "PYTHONUNBUFFERED": "1"}
    ckpt = run_dir / "stages" / "input_1_ctc" / "lightning" / "last.ckpt"
    # 1. start both ranks in a session of their own, stop them all once a checkpoint (step >= 8) is on disk, kill
    log = (tmp / "killed_run.log").open("w")
    proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline, killed_at = time.time() + 480, None  # generous: a busy 2-core machine starts two processes slowly
    try:
        while proc.poll() is None and time.time() < deadline:
            if ckpt.is_file():
                os.killpg(proc.pid, signal.SIGSTOP)
                killed_at = _step(ckpt)
                if killed_at is not None and killed_at >= 8:
                    break
                os.killpg(proc.pid, signal.SIGCONT)
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    out = (tmp / "killed_run.log").read_text()
    assert killed_at is not None and killed_at >= 8, f"no checkpoint before the kill:\n{out[-3000:]}"
    assert not (run_dir / "stages" / "input_1_ctc" / "done.json").exists()
    first_audit = _audit(audit)
    # 2. the same command again: input_1_ctc resumes from the checkpoint, then input_2_align runs
    res = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    done = {s: json.loads((run_dir / "stages" / s / "done.json").read_text()) for s in STAGES}
    return {"run_dir": run_dir, "done": done, "killed_at": killed_at, "first_audit": first_audit,
            "audit": _audit(audit), "output": res.stdout}


def test_both_ranks_train_every_step(ddp_run):
    for stage, done in ddp_run["done"].items():
        assert done["world_size"] == 2 and [r["rank"] for r in done["ranks"]] == [0, 1]
        # batches trained by each process since it started: after the resume, the steps left
        left = done["steps"] - (ddp_run["killed_at"] if stage == "input_1_ctc" else 0)
        assert all(r["batches"] == left and r["cuts"] >= left for r in done["ranks"]), (stage, done["ranks"])


def test_only_rank_0_writes_checkpoints_and_stage_outputs(ddp_run):
    # the killed run, then both runs: two processes each (rank 1 ran), every write by rank 0
    for records, starts in ((ddp_run["first_audit"], [0, 1]), (ddp_run["audit"], [0, 0, 1, 1])):
        assert sorted(r["rank"] for r in records if r["what"] == "start") == starts
        writes = [r for r in records if r["what"] != "start"]
        assert writes and any(r["what"] == "checkpoint" for r in writes)
        assert {r["rank"] for r in writes} == {0}, [r for r in writes if r["rank"] != 0]
    written = [(r["what"], Path(r["path"]).name) for r in ddp_run["audit"] if r["what"] in ("stage_weights", "done")]
    assert written == [("stage_weights", "input_1_ctc"), ("done", "input_1_ctc"),
                       ("stage_weights", "input_2_align"), ("done", "input_2_align")]  # once each
    assert ddp_run["output"].count("stage input_2_align: done in") == 1  # one console, not one per rank


def test_the_frozen_llm_is_unchanged(ddp_run):
    cfg = load_recipe(SMOKE)
    llm_only = OmegaConf.create({"model": {"llm": OmegaConf.to_container(cfg.model.llm, resolve=True)}})
    fresh = build_model(llm_only)["llm"].fingerprint()
    assert all(d["llm_fingerprint"] == fresh for d in ddp_run["done"].values())


def test_the_killed_stage_resumed_to_max_steps(ddp_run):
    ctc = ddp_run["done"]["input_1_ctc"]
    assert ctc["resumed"] is True and ctc["steps"] == STEPS
    assert ddp_run["done"]["input_2_align"]["resumed"] is False
    assert not (ddp_run["run_dir"] / "stages" / "input_1_ctc" / "lightning").exists()


def test_loss_falls_like_a_single_process_run_with_the_same_global_batch(ddp_run, tmp_path):
    cfg = load_recipe(SMOKE, ["schedule=[input_1_ctc]", *SHORTER, "stages.input_1_ctc.trainer.enable_progress_bar=false"])
    run_recipe(cfg, tmp_path)
    single = json.loads((tmp_path / "stages" / "input_1_ctc" / "done.json").read_text())
    ddp = ddp_run["done"]["input_1_ctc"]
    assert single["world_size"] == 1
    for done in (single, ddp):
        assert done["val_loss_end"] < 0.8 * done["val_loss_start"], done
        assert done["loss_end"] < 0.85 * done["loss_start"], done
    # the same starting weights and dev cuts (averaged over the ranks under DDP): the same dev loss at step 0,
    # and DDP takes off about as much of it as the single process (its shards reorder the batches, so not exactly)
    assert ddp["val_loss_start"] == pytest.approx(single["val_loss_start"], rel=0.05)

    def drop(d):
        return (d["val_loss_start"] - d["val_loss_end"]) / d["val_loss_start"]

    assert 0.75 < drop(ddp) / drop(single) < 1.33, (drop(ddp), drop(single))
