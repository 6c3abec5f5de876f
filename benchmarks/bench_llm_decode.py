"""Per-token decode time of the frozen LLM: KV cache (``HFCausalLM.step``) vs re-running the whole prefix.

Default backbone SmolLM2-135M-Instruct (embedded), float32 on CPU, with 2 and then 1 torch threads.
For each context length L (positions already in the conversation: system prompt, user prefix, 25 prompt
embeddings and random "audio" embeddings), greedy-decodes ``--tokens`` tokens both ways and reports
milliseconds per token (median over the tokens).
Also times the system prefill, a fork (one copy of the cache) and the weight fingerprint.

    python benchmarks/bench_llm_decode.py [--model smollm2-135m-instruct] [--tokens 12] \
        [--contexts 64 256 512] [--threads 2 1]
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

from omnikit.components.llms.hf_causal_lm import HFCausalLM, HFCausalLMConfig
from omnikit.components.llms.sampling import GREEDY
from omnikit.evaluation.machine import cpu_model


def timed(fn, repeats: int = 1) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def conversation(m: HFCausalLM, context: int):
    """A state holding ``context`` positions (system + user prefix + prompt + audio), ready to answer."""
    state = m.new_conversation()
    m.start_user_turn(state)
    n_audio = max(1, context - state.length - len(m.segments.assistant_prefix))
    gen = torch.Generator().manual_seed(0)
    m.append_audio(state, torch.randn(1, n_audio, m.hidden_size, generator=gen) * 0.02)
    return state


@torch.no_grad()
def bench_context(m: HFCausalLM, context: int, tokens: int) -> dict:
    """Greedy decode ``tokens`` tokens after ``context`` positions, with the cache and by re-running.

    The cached loop is what ``HFCausalLM.step`` does (feed one embedding on top of the cache, project the
    last hidden state), written out so that an early end-of-turn token does not stop the measurement.
    """
    state = conversation(m, context)
    start = time.perf_counter()
    token, _ = m.start_assistant(state, GREEDY)
    first = time.perf_counter() - start
    prefix_len = state.length
    cached_ids = [token]
    cached_times = []
    for _ in range(tokens - 1):
        start = time.perf_counter()
        hidden = m._feed(state, m.embed([token]))[0, -1]
        token = int(m._logits(hidden).argmax())
        cached_times.append(time.perf_counter() - start)
        cached_ids.append(token)
    cached = statistics.median(cached_times)

    seq = _sequence(m, context)  # the same positions, re-run in full for every new token
    assert seq.shape[0] == prefix_len
    rerun_ids = []
    rerun_times = []
    for _ in range(tokens):
        start = time.perf_counter()
        hidden = m._base(inputs_embeds=seq[None], use_cache=False).last_hidden_state[0, -1]
        token = int(m._logits(hidden).argmax())
        rerun_times.append(time.perf_counter() - start)
        rerun_ids.append(token)
        seq = torch.cat([seq, m.embed([token])])
    rerun = statistics.median(rerun_times)
    return {
        "context_positions": prefix_len,
        "new_tokens": tokens,
        "first_token_ms": round(first * 1e3, 2),
        "cached_ms_per_token": round(cached * 1e3, 2),
        "rerun_prefix_ms_per_token": round(rerun * 1e3, 2),
        "speedup": round(rerun / cached, 1),
        "same_tokens": rerun_ids == cached_ids,
    }


def _sequence(m: HFCausalLM, context: int) -> torch.Tensor:
    seg = m.segments
    head = m.embed(seg.system_ids(m.tokenizer, m.config.system_prompt) + seg.user_prefix_first)
    head = torch.cat([head, m.prompt_embeddings.detach()])
    n_audio = max(1, context - head.shape[0] - len(seg.assistant_prefix))
    gen = torch.Generator().manual_seed(0)
    audio = torch.randn(n_audio, m.hidden_size, generator=gen) * 0.02
    return torch.cat([head, audio, m.embed(seg.assistant_prefix)])


def run_threads(m: HFCausalLM, threads: int, contexts: list[int], tokens: int) -> dict:
    torch.set_num_threads(threads)
    m.new_conversation()  # warm up
    prefill = timed(lambda: (m._system_states.clear(), m.new_conversation()), repeats=3)
    state = conversation(m, max(contexts))
    fork_ms = timed(lambda: m.fork(state), repeats=5) * 1e3
    return {
        "torch_threads": threads,
        "system_prefill_ms": round(prefill * 1e3, 1),
        "fork_ms_at_max_context": round(fork_ms, 2),
        "decode": [bench_context(m, c, tokens) for c in contexts],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--tokens", type=int, default=12)
    parser.add_argument("--contexts", type=int, nargs="+", default=[64, 256, 512])
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--out", default="benchmarks/results/llm_decode.json")
    args = parser.parse_args()
    torch.manual_seed(0)

    torch.set_num_threads(args.threads[0])
    start = time.perf_counter()
    m = HFCausalLM(HFCausalLMConfig(model=args.model, dtype="float32", device="cpu"))
    load_s = time.perf_counter() - start
    fingerprint_s = timed(m.fingerprint)
    runs = [run_threads(m, t, args.contexts, args.tokens) for t in args.threads]
    load_after = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []

    result = {
        "benchmark": "llm_decode",
        "model": args.model,
        "llm_parameters": sum(p.numel() for p in m.llm.parameters()),
        "dtype": "float32",
        "device": "cpu",
        "load_s": round(load_s, 2),
        "fingerprint_s": round(fingerprint_s, 2),
        "runs": runs,
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "transformers": __import__("transformers").__version__,
            "python": platform.python_version(),
            "load_average_after": load_after,
            "note": "CPU shared with other engineers' jobs while measuring (load average above the 2 cores); "
            "numbers are noisy upper bounds, and 2 threads suffer most from the contention.",
        },
        "command": "python benchmarks/bench_llm_decode.py "
        + " ".join(
            f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in vars(args).items()
        ),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
