"""Cost of a run: training wall time and steps per stage (from ``stages/<stage>/done.json``), eval peak memory."""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path
from typing import Any

from omnikit.model.checkpoints import DONE, stage_dir


def stage_costs(run_dir: Path, schedule: list[str]) -> dict[str, dict[str, Any]]:
    """Per finished stage: ``seconds``, ``steps``, ``trained_parameters``, loss start/end and, when the runner
    recorded them, peak memory fields (any ``done.json`` key containing ``memory`` or ``rss``)."""
    out: dict[str, dict[str, Any]] = {}
    for stage in schedule:
        path = stage_dir(run_dir, stage) / DONE
        if not path.is_file():
            continue
        info = json.loads(path.read_text())
        row = {k: info.get(k) for k in ("seconds", "steps", "trained_parameters", "loss_start", "loss_end")}
        row.update({k: v for k, v in info.items() if "memory" in k or "rss" in k})
        out[stage] = row
    return out


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024, 1)


def peak_gpu_mb() -> float | None:
    """Peak CUDA memory allocated by this process (MiB), or None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)
