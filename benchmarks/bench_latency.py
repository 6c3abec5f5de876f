"""Response latency of a trained run, in the paper's breakdown, over spoken test turns.

Each test question is streamed through a Session (``ChatDriver``: 160 ms chunks, then silence) with the run's VAD
and duplex policy; for every answered turn the session records RESPOND decision -> first text segment -> decoder
prefill -> first speech-token chunk -> first PCM, and the end-of-speech -> decision delay.

    python benchmarks/bench_latency.py runs/quickstart --turns 20 [--threads 2] [--device cpu]

Writes benchmarks/results/latency.json (median, p90, mean per segment; the machine; the paper's numbers).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from tqdm import tqdm

from omnikit.data.sources import open_source
from omnikit.evaluation.latency import latency_breakdown
from omnikit.evaluation.machine import machine_info
from omnikit.evaluation.probes import spoken_turn
from omnikit.evaluation.report import default_source
from omnikit.inference.dialogue_model import DialogueModel

RESULTS = Path(__file__).parent / "results" / "latency.json"
PAPER_MS = {  # Freeze-Omni, spec §7.4 (GPU server, Qwen2-7B): average / p50 / p90
    "decision_to_first_segment_ms": {"avg": 478, "p50": 468, "p90": 750},
    "segment_to_decoder_prefill_ms": {"avg": 15, "p50": 15, "p90": 17},
    "prefill_to_first_token_chunk_ms": {"avg": 237, "p50": 235, "p90": 252},
    "token_chunk_to_first_pcm_ms": {"avg": 11, "p50": 11, "p90": 13},
    "decision_to_first_pcm_ms": {"avg": 745, "p50": 753, "p90": 1020},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--turns", type=int, default=20)
    ap.add_argument("--part", default="dialogue_test")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = DialogueModel.from_run_dir(args.run_dir, device=args.device, overrides={"inference": {"greedy": True}})
    plugin, root = open_source(model.recipe, args.run_dir, default_source(model.recipe))
    cuts = list(plugin.cuts(args.part, root))[: args.turns]
    timings, missed = [], 0
    t0 = time.perf_counter()
    for cut in tqdm(cuts, desc="latency turns"):
        turn = spoken_turn(model, torch.from_numpy(cut.load_audio()).reshape(-1))
        if turn.timings:
            timings.append(turn.timings[0])
        else:
            missed += 1
    result = {
        "run_dir": str(args.run_dir),
        "part": args.part,
        "turns": len(cuts),
        "answered": len(timings),
        "not_answered": missed,
        "wall_s": round(time.perf_counter() - t0, 1),
        "latency_ms": latency_breakdown(timings),
        "paper_ms": PAPER_MS,
        "machine": machine_info(device=args.device),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["latency_ms"], indent=2))


if __name__ == "__main__":
    main()
