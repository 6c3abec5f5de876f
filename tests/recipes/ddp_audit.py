"""``OMNIKIT_AUDIT_DIR=DIR python ddp_audit.py <omnikit CLI args>``: the omnikit CLI with every checkpoint and
stage-output write recorded, per process, in ``DIR/<pid>.jsonl`` (used by ``test_ddp.py``).

Lightning's DDP launcher starts the other ranks by running this same command line again, so every rank records
its own writes: a Lightning checkpoint (``CheckpointIO.save_checkpoint``), a stage's weights (``save_stage``)
and its ``done.json`` (``mark_done``), each with the rank that wrote it. A ``start`` line says that a process
of this rank ran at all.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def _rank() -> int:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("LOCAL_RANK", 0))


def main() -> None:
    audit = Path(os.environ["OMNIKIT_AUDIT_DIR"])  # the environment, which the launched ranks inherit
    audit.mkdir(parents=True, exist_ok=True)
    log = audit / f"{os.getpid()}.jsonl"

    def record(what: str, path: object) -> None:
        with log.open("a") as f:
            f.write(json.dumps({"rank": _rank(), "what": what, "path": str(path)}) + "\n")

    from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

    import omnikit.training.runner as runner

    save_ckpt, save_stage, mark_done = TorchCheckpointIO.save_checkpoint, runner.save_stage, runner.mark_done

    def audited_ckpt(self, checkpoint, path, storage_options=None):
        record("checkpoint", path)
        return save_ckpt(self, checkpoint, path, storage_options)

    def audited_stage(run_dir, stage, *args, **kwargs):
        record("stage_weights", Path(run_dir) / "stages" / stage)
        return save_stage(run_dir, stage, *args, **kwargs)

    def audited_done(run_dir, stage, info):
        record("done", Path(run_dir) / "stages" / stage)
        return mark_done(run_dir, stage, info)

    TorchCheckpointIO.save_checkpoint = audited_ckpt
    runner.save_stage, runner.mark_done = audited_stage, audited_done
    record("start", os.environ.get("LOCAL_RANK", "parent"))

    from omnikit.cli.app import main as cli

    cli()


if __name__ == "__main__":
    main()
