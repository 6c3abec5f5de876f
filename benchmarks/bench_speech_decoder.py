"""Speech-decoder speed: AR tokens/s and segment start -> first speech-token chunk (batch 1, random weights).

Usage: python benchmarks/bench_speech_decoder.py [--threads 2 1] [--device cpu]
       [--out benchmarks/results/speech_decoder.json]

For each size it generates one segment (``text_tokens`` LLM token embeddings + as many hidden states) with
EOS disabled, so exactly ``--tokens`` codec tokens are produced, and reports the median of ``--repeats`` runs:
``prefill_ms`` (prefix decoder + H), ``prefill_to_first_chunk_ms`` (the paper's "prefill -> first speech-token
chunk", 20 tokens), ``segment_start_to_first_chunk_ms`` (their sum) and AR ``tokens_per_s``, plus the best
run of each (``best_*``), the better estimate on a CPU shared with other jobs. On a loaded CPU run it with
``OMP_WAIT_POLICY=PASSIVE``: with the default (spinning) policy two threads are several times slower.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from omnikit.components.speech_decoders.nar_ar import NARARConfig, NARARSpeechDecoder
from omnikit.evaluation.machine import machine_info

SIZES = {
    "quickstart": dict(cond_dim=576, config=dict(dim=256, heads=4, ffn_dim=1024, layers=4, prefix_layers=4,
                                                 prenet_layers=2, input_mapping="projection")),
    "paper": dict(cond_dim=3584, config=dict(dim=896, heads=14, ffn_dim=4864, layers=4, prefix_layers=4,
                                             prenet_layers=2, input_mapping="reshape")),
}
DEFAULT_TOKENS = {"quickstart": 200, "paper": 60}  # paper size is slow on a shared 2-core CPU


def machine(device: str) -> dict:
    note = ("GPU run on a dedicated accelerator machine." if device.startswith("cuda")
            else "CPU shared with other engineers' jobs while measuring; numbers are noisy upper bounds.")
    return machine_info(device=device, note=note,
                        omp_wait_policy=os.environ.get("OMP_WAIT_POLICY", "unset (libgomp default)"))

def bench_size(name: str, tokens: int, repeats: int, text_tokens: int, device: str) -> dict:
    spec = SIZES[name]
    cfg = NARARConfig(**spec["config"], dropout=0.0, attention_dropout=0.0)
    torch.manual_seed(0)
    model = NARARSpeechDecoder(cfg, cond_dim=spec["cond_dim"], codebook_size=1024).to(device).eval()
    with torch.no_grad():
        model.head.bias[model.eos_id] = -1e9  # never stop early: measure exactly `tokens` steps
    text = torch.randn(1, text_tokens, spec["cond_dim"], device=device)
    hidden = torch.randn(1, text_tokens, spec["cond_dim"], device=device)
    runs = []
    for i in range(repeats + 1):  # first run is warm-up
        timings: dict[str, float] = {}
        gen = torch.Generator().manual_seed(i)
        chunks = model.generate(text, hidden, max_tokens=tokens, generator=gen, timings=timings)
        n = sum(len(c) for c in chunks)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        assert n == tokens
        if i:
            runs.append(timings)
    med = lambda key: statistics.median(r[key] for r in runs)  # noqa: E731
    prefill, first, total = med("prefill_s"), med("first_chunk_s"), med("total_s")
    best_start_to_first = min(r["prefill_s"] + r["first_chunk_s"] for r in runs)
    best_rate = max(tokens / (r["total_s"] - r["prefill_s"]) for r in runs)
    return {
        "config": spec["config"],
        "cond_dim": spec["cond_dim"],
        "codebook_size": 1024,
        "parameters": sum(p.numel() for p in model.parameters()),
        "text_tokens": text_tokens,
        "hidden_states": text_tokens,
        "generated_tokens": tokens,
        "repeats": repeats,
        "prefill_ms": round(prefill * 1e3, 2),
        "prefill_to_first_chunk_ms": round(first * 1e3, 2),
        "segment_start_to_first_chunk_ms": round((prefill + first) * 1e3, 2),
        "tokens_per_s": round(tokens / (total - prefill), 1),
        "realtime_factor_at_40Hz": round(tokens / (total - prefill) / 40.0, 2),
        "best_segment_start_to_first_chunk_ms": round(best_start_to_first * 1e3, 2),
        "best_tokens_per_s": round(best_rate, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1], help="torch intra-op thread counts")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", nargs="+", default=list(SIZES))
    ap.add_argument("--tokens", type=int, default=0,
                    help="codec tokens per run (0: 200 = 5 s of audio for quickstart, 60 for paper size)")
    ap.add_argument("--text-tokens", type=int, default=12, help="LLM tokens in the segment")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/speech_decoder.json")
    args = ap.parse_args()
    t0 = time.time()
    results: dict[str, dict] = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name in args.sizes:
            tokens = args.tokens or DEFAULT_TOKENS[name]
            measured = bench_size(name, tokens, args.repeats, args.text_tokens, args.device)
            results[f"{name}/threads={threads}"] = {"torch_threads": threads, **measured}
            print(name, threads, results[f"{name}/threads={threads}"], flush=True)
    report = {
        "benchmark": "speech_decoder",
        "command": "python benchmarks/bench_speech_decoder.py " + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items()),
        "machine": machine(args.device),
        "paper_reference": {"prefill_to_first_chunk_ms_avg": 237, "p50": 235, "p90": 252,
                            "source": "Freeze-Omni Table (spec §7.4), GPU, speech-token chunk 40"},
        "results": results,
        "wall_s": round(time.time() - t0, 1),
        "load_average_at_end": os.getloadavg(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
