"""Benchmark the ``speech_world`` build: time per phase at a reduced scale, extrapolated to the default size.

    python benchmarks/bench_speech_world.py [--scale 0.1 --root /tmp/speech_world_bench --workers 1]

Builds the default config times ``--scale`` (real voices and the real frozen LLM), reads the phase timings
that ``prepare`` stores in ``root/prepared.json`` and writes ``benchmarks/results/speech_world_build.json``.
Text loading is a fixed cost; answers and audio grow linearly with the counts, so the full-size estimate is
``text + (wall - text) / scale``. A second estimate for two cores not shared with anyone uses CPU time:
``text + max(cpu / 2, answers_cpu) / scale`` (the one-thread LLM and the synthesis workers share the cores). The machine's load average is recorded: on a CPU shared
with other jobs the numbers are upper bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
from pathlib import Path

import torch

from omnikit.data.world.builder import SpeechWorldDataset
from omnikit.evaluation.machine import cpu_model

RESULTS = Path(__file__).parent / "results" / "speech_world_build.json"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=0.1)
    ap.add_argument("--root", default="/tmp/speech_world_bench")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="report an existing build at --root (its recorded timings)")
    args = ap.parse_args()
    root = Path(args.root)
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    cfg = SpeechWorldDataset.config_class(scale=args.scale, workers=args.workers)
    ds = SpeechWorldDataset(cfg)
    load_before = os.getloadavg()
    ds.prepare(root)
    info = json.loads((root / "prepared.json").read_text())
    sec = info["seconds"]
    wall = sum(v for k, v in sec.items() if "cpu" not in k)
    scaled = wall - sec["text"]
    cpu = sec.get("cpu_process_and_children", 0.0)
    # on 2 dedicated cores: the LLM (one thread) and the synthesis workers share them
    quiet = max(cpu / 2, sec.get("answers_cpu", 0.0))
    result = {
        "benchmark": "speech_world_build",
        "scale": args.scale,
        "workers": args.workers,
        "wall_s": round(wall, 1),
        "phase_s": sec,
        "counts": info["counts"],
        "audio_hours": info["hours"],
        "estimated_full_build_s": round(sec["text"] + scaled / args.scale, 1),
        "cpu_s": cpu,
        "estimated_full_build_s_on_2_free_cores": round(sec["text"] + quiet / args.scale, 1),
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "load_average_before": None if args.keep else [round(x, 2) for x in load_before],
            "load_average_after": None if args.keep else [round(x, 2) for x in os.getloadavg()],
            "shared_cpu": "the 2 cores were shared with other engineers' jobs during the run",
        },
        "command": f"python benchmarks/bench_speech_world.py --scale {args.scale} --workers {args.workers}",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
