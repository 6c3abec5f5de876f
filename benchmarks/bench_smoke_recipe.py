"""Wall time of the smoke recipe's six training stages (the whole Freeze-Omni schedule at toy size).

    python benchmarks/bench_smoke_recipe.py [--run-dir DIR]

Writes ``benchmarks/results/smoke_recipe.json``: per-stage seconds (from each stage's ``done.json``), losses,
the total wall time of ``run_recipe`` and a machine description. The machines this runs on are often shared
with other jobs; the JSON records the load average before and after so that numbers can be read in context.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

from omnikit.config import load_recipe, validate_recipe
from omnikit.evaluation.machine import cpu_model
from omnikit.training.runner import run_recipe

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--run-dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "smoke_recipe.json")
    args = ap.parse_args()
    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="omnikit-smoke-"))
    shutil.rmtree(run_dir, ignore_errors=True)
    cfg = load_recipe(REPO / "recipes" / "smoke.yaml")
    validate_recipe(cfg)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    run_recipe(cfg, run_dir)
    total = time.perf_counter() - t0
    stages = {}
    for name in cfg.schedule:
        done = json.loads((run_dir / "stages" / name / "done.json").read_text())
        stages[name] = {k: done[k] for k in ("seconds", "steps", "loss_start", "loss_end", "trained_parameters")}
    result = {
        "benchmark": "smoke_recipe",
        "command": "python benchmarks/bench_smoke_recipe.py",
        "total_seconds": round(total, 1),
        "stages": stages,
        "machine": {
            "cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "shared": "the CPU was shared with other engineers' jobs (see the load averages)",
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
