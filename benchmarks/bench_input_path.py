"""Per-chunk cost of the streaming speech input path (front-end + encoder + adapter) and its real-time factor.

Random weights, batch 1, 160 ms chunks (2560 samples -> 16 fbank frames -> 4 encoder frames -> 2 adapter
embeddings). Steady state: timing starts after the K/V caches are full (left_chunks + 4 warm-up chunks).

    python benchmarks/bench_input_path.py                 # CPU, torch threads = 2
    python benchmarks/bench_input_path.py --threads 1     # adds a 1-thread entry to the same JSON
    python benchmarks/bench_input_path.py --device cuda   # GPU, if there is one
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

import omnikit.components.adapters.cnn_subsampling as cnn
import omnikit.components.encoders.chunk_transformer as ct
import omnikit.components.encoders.sb_conformer as sbc
from omnikit.audio.frontend import StreamingFrontend
from omnikit.evaluation.machine import cpu_model

CHUNK_SECONDS = 0.16

SIZES = {
    "quickstart_6x256": dict(
        encoder=("chunk_transformer", dict(layers=6, dim=256, heads=4, ffn_dim=1024)), llm_dim=576),
    "sb_conformer_6x256": dict(
        encoder=("sb_conformer", dict(layers=6, dim=256, heads=4, ffn_dim=1024, kernel_size=15)), llm_dim=576),
    "paper_24x1024": dict(
        encoder=("chunk_transformer", dict(layers=24, dim=1024, heads=16, ffn_dim=4096)), llm_dim=3584),
}


def build(name: str, device: str):
    kind, args = SIZES[name]["encoder"]
    if kind == "chunk_transformer":
        enc = ct.ChunkTransformerEncoder(ct.ChunkTransformerConfig(**args), input_dim=80)
    else:
        enc = sbc.SpeechBrainConformerEncoder(sbc.SBConformerConfig(**args), input_dim=80)
    ad = cnn.CNNSubsamplingAdapter(cnn.CNNSubsamplingConfig(), in_dim=enc.output_dim, out_dim=SIZES[name]["llm_dim"])
    return enc.to(device).eval(), ad.to(device).eval()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench(name: str, chunks: int, device: str) -> dict:
    torch.manual_seed(0)
    enc, ad = build(name, device)
    params = sum(p.numel() for p in enc.parameters()) + sum(p.numel() for p in ad.parameters())
    fe = StreamingFrontend()
    warm = enc.config.left_chunks + 4
    pcm = torch.randn(2560 * (warm + chunks)) * 0.1
    fe_state, enc_state, ad_state = fe.init_state(), enc.init_state(), ad.init_state()
    fe_ms, model_ms = [], []
    with torch.inference_mode():
        for i in range(warm + chunks):
            t0 = time.perf_counter()
            feats, fe_state = fe.push(pcm[i * 2560 : (i + 1) * 2560], fe_state)
            t1 = time.perf_counter()
            x = feats[0].unsqueeze(0).to(device)
            h, enc_state = enc.forward_chunk(x, enc_state)
            y, ad_state = ad.forward_chunk(h, ad_state)
            sync(device)
            t2 = time.perf_counter()
            assert y.shape[1] == 2
            if i >= warm:
                fe_ms.append(1e3 * (t1 - t0))
                model_ms.append(1e3 * (t2 - t1))
    total = [a + b for a, b in zip(fe_ms, model_ms, strict=True)]
    q = statistics.quantiles(total, n=10)
    return {
        "encoder": SIZES[name]["encoder"][0], "encoder_args": SIZES[name]["encoder"][1],
        "adapter_out_dim": SIZES[name]["llm_dim"], "params": params, "chunks_timed": chunks,
        "frontend_ms_mean": round(statistics.mean(fe_ms), 3),
        "encoder_adapter_ms_mean": round(statistics.mean(model_ms), 3),
        "total_ms_mean": round(statistics.mean(total), 3),
        "total_ms_p50": round(statistics.median(total), 3), "total_ms_p90": round(q[8], 3),
        "rtf": round(statistics.mean(total) / (1e3 * CHUNK_SECONDS), 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chunks", type=int, default=60, help="timed chunks per size (paper size: half)")
    ap.add_argument("--sizes", nargs="*", default=list(SIZES))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "input_path.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    results = {}
    for name in args.sizes:
        n = args.chunks // 2 if name.startswith("paper") and args.device == "cpu" else args.chunks
        results[name] = bench(name, n, args.device)
        print(name, json.dumps(results[name]))
    machine = {
        "cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": args.threads, "torch": torch.__version__,
        "python": platform.python_version(), "device": args.device,
        "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
        "load_average_1min_at_start": load,
        "note": "CPU shared with other engineers' jobs (see load average); numbers are upper bounds."
        if args.device == "cpu" else "dedicated GPU machine",
    }
    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.exists() else {}
    key = f"{args.device.split(':')[0]}_threads{args.threads}"
    command = f"python benchmarks/bench_input_path.py --device {args.device} --threads {args.threads} --chunks {args.chunks}"
    previous[key] = {"machine": machine, "chunk_ms": 1e3 * CHUNK_SECONDS, "batch": 1, "results": results,
                     "command": command}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(previous, indent=2) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
