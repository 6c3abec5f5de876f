"""The frozen LLM's cached decode step against its memory-bandwidth floor, per inference dtype, paired in one run.

For every thread count and inference dtype (``HFCausalLM.prepare_inference``), in one process and in alternating
rounds so that all three see the same machine:

* **omnikit** — ``HFCausalLM.step`` after a real conversation (system prompt, a written question, assistant
  prefix: about 40 positions), median milliseconds over ``--tokens`` (>= 50) greedy tokens;
* **Hugging Face** — ``generate`` (greedy, its own KV cache) on the same model in the same dtype and the same
  context embeddings; per-token times from a logits processor's clock (int8 has no Hugging Face CPU path);
* **the floor** — the time to stream a buffer of as many bytes as one step reads from the weights at that dtype
  (``FastDecoder.weight_bytes``: every matrix once, the LM head included), summed as float32 words.

Then the greedy answers (``--answer-tokens`` tokens) to ``--prompts`` (>= 100) written questions, per dtype,
compared with the float32 training weights' answers: ``agreement_with_fp32`` is the fraction of identical answers.

The machine must be quiet: the run is REFUSED (exit 3, nothing written) when the 1-minute load average exceeds
0.6 at the start, or when other processes used more than a quarter of a core while the timings ran (from
/proc/stat minus this process's own CPU time). ``--smoke`` runs a few tokens and prompts, writes nothing and only
reports the guard (a check that the script works).

    python benchmarks/bench_llm_decode.py [--dtypes float32 float16 bfloat16 int8] [--threads 1 2] \\
        [--tokens 64] [--prompts 120] [--answer-tokens 64] [--out benchmarks/results/llm_decode.json]

Writes ``benchmarks/results/llm_decode.json``: flat keys for the chosen default (``inference_dtype: auto`` =
float16 on CPU, at its fastest thread count): ``dtype``, ``threads``, ``ms_per_token``, ``floor_ms``,
``ratio_to_floor``, ``hf_generate_ms_per_token``, ``agreement_with_fp32``, ``n_prompts``; ``by_dtype`` with every
dtype and thread count; the machine, its load and the command.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from omnikit.components.llms import kernels
from omnikit.components.llms.hf_causal_lm import HFCausalLM, HFCausalLMConfig
from omnikit.components.llms.sampling import GREEDY
from omnikit.evaluation.machine import machine_info

MAX_LOAD_1M = 0.6
"""Refuse to measure when the 1-minute load average is above this at the start."""
MAX_OTHER_CORES = 0.25
"""Refuse the result when other processes used more than this many cores (on average) during the timings."""
DEFAULT_DTYPE = "float16"  # what inference_dtype: auto picks on CPU (SmolLM2's weights fit float16's range)
RESULTS = Path(__file__).parent / "results" / "llm_decode.json"
TIMING_QUESTION = "Tell me a long story about a dragon who learns to fly."

_SUBJECTS = ["the moon", "volcanoes", "honey bees", "the ocean", "trains", "chess", "rainbows", "penguins",
             "the piano", "bread", "glaciers", "owls"]
_TEMPLATES = ["What is {s}?", "Tell me one fact about {s}.", "Why do people like {s}?",
              "How would you describe {s} to a child?", "What is the most surprising thing about {s}?",
              "Can you explain {s} in one sentence?", "What colour is usually associated with {s}?",
              "Write a short poem about {s}.", "Where can I learn more about {s}?", "Is {s} dangerous?"]


def prompts(n: int) -> list[str]:
    """``n`` fixed written questions (templates x subjects, in a fixed interleaved order)."""
    out = [t.format(s=s) for i, s in enumerate(_SUBJECTS) for t in _TEMPLATES[i % 3 :] + _TEMPLATES[: i % 3]]
    if n > len(out):
        raise ValueError(f"at most {len(out)} prompts")
    step = len(out) / n
    return [out[int(i * step)] for i in range(n)]


# ---------------------------------------------------------------------------------------------- machine guard
def _busy_jiffies() -> int:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields[:8]) - idle


def _self_jiffies() -> int:
    parts = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return int(parts[11]) + int(parts[12])  # utime + stime (all threads)


class OtherLoad:
    """Cores used by other processes between ``start()`` and ``cores()`` (Linux /proc; None elsewhere)."""

    def __init__(self) -> None:
        self.ok = Path("/proc/stat").exists()
        self.tick = os.sysconf("SC_CLK_TCK") if self.ok else 100

    def start(self) -> None:
        if self.ok:
            self.t0, self.busy0, self.self0 = time.monotonic(), _busy_jiffies(), _self_jiffies()

    def cores(self) -> float | None:
        if not self.ok:
            return None
        elapsed = time.monotonic() - self.t0
        other = (_busy_jiffies() - self.busy0) - (_self_jiffies() - self.self0)
        return round(max(other, 0) / self.tick / max(elapsed, 1e-9), 3)


# ---------------------------------------------------------------------------------------------- measurements
def median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1e3, 2)


def open_answer(m: HFCausalLM, question: str) -> tuple[Any, int, float]:
    """A conversation with ``question`` asked and the assistant turn opened: (state, first token, its ms)."""
    state = m.new_conversation()
    m.append_text_user_turn(state, question)
    start = time.perf_counter()
    token, _ = m.start_assistant(state, GREEDY)
    return state, token, (time.perf_counter() - start) * 1e3


def time_steps(m: HFCausalLM, tokens: int) -> tuple[list[float], int, float]:
    """Per-token seconds of ``step`` over ``tokens`` greedy tokens (an end of turn is replaced by a comma so the
    answer keeps going), the context length, and the first-token milliseconds."""
    state, token, first_ms = open_answer(m, TIMING_QUESTION)
    context = state.length
    filler = m.tokenize(",")[0]
    times = []
    for _ in range(tokens):
        if m.is_end_of_turn(token):
            token = filler
        start = time.perf_counter()
        token, _ = m.step(state, token, GREEDY)
        times.append(time.perf_counter() - start)
    return times, context, first_ms


def step_breakdown(m: HFCausalLM, tokens: int) -> dict[str, float]:
    """Median ms of a step's parts on the fast path: the layer stack (one C call with the kernels), the LM head
    (with the exact top-logit refinement), and everything else ``step`` does (embedding, sampling, bookkeeping)."""
    fast = m.fast_decoder
    assert fast is not None
    state, token, _ = open_answer(m, TIMING_QUESTION)
    stack, head, total = [], [], []
    for _ in range(tokens):
        t0 = time.perf_counter()
        embed = m.embed([token])
        t1 = time.perf_counter()
        hidden = fast.forward(embed, state.cache)[0]
        t2 = time.perf_counter()
        token = int(fast.logits(hidden).argmax())
        t3 = time.perf_counter()
        state.length += 1
        stack.append(t2 - t1)
        head.append(t3 - t2)
        total.append(t3 - t0)
    out = {"layers_ms": median_ms(stack), "lm_head_ms": median_ms(head), "step_ms": median_ms(total)}
    out["other_ms"] = round(out["step_ms"] - out["layers_ms"] - out["lm_head_ms"], 2)
    return out


def context_embeddings(m: HFCausalLM) -> torch.Tensor:
    """The same positions as ``time_steps``' conversation, as one (1, L, H) embedding sequence."""
    seg = m.segments
    ids = (seg.system_ids(m.tokenizer, m.config.system_prompt) + seg.user_prefix_first
           + m.tokenize(TIMING_QUESTION) + seg.assistant_prefix)
    return m.embed(ids)[None]


def time_hf_generate(model: Any, embeds: torch.Tensor, tokens: int) -> list[float]:
    """Per-token seconds of Hugging Face ``generate`` (greedy, default cache) after ``embeds``."""
    from transformers import LogitsProcessor, LogitsProcessorList

    class Clock(LogitsProcessor):
        def __init__(self) -> None:
            self.stamps: list[float] = []

        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            self.stamps.append(time.perf_counter())
            return scores

    clock = Clock()
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        model.generate(
            inputs_embeds=embeds.to(dtype), attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long),
            max_new_tokens=tokens + 1, min_new_tokens=tokens + 1, do_sample=False,
            logits_processor=LogitsProcessorList([clock]), pad_token_id=model.config.eos_token_id,
            temperature=None, top_p=None, top_k=None,
        )
    return [b - a for a, b in zip(clock.stamps, clock.stamps[1:], strict=False)]


def time_floor(nbytes: int, repeats: int) -> list[float]:
    """Seconds to stream ``nbytes`` bytes through memory (a float32 sum over a fresh buffer of that size)."""
    buf = torch.ones(nbytes // 4, dtype=torch.float32)
    buf.sum()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        buf.sum()
        times.append(time.perf_counter() - start)
    del buf
    return times


def answers(m: HFCausalLM, questions: list[str], max_tokens: int) -> list[list[int]]:
    out = []
    for q in questions:
        state = m.new_conversation()
        m.append_text_user_turn(state, q)
        out.append(m.generate(state, max_new_tokens=max_tokens)[0])
    return out


def prefix_agreement(a: list[int], b: list[int]) -> float:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n / max(len(a), len(b), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float16", "bfloat16", "int8"])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--tokens", type=int, default=64, help="timed decode tokens per measurement (>= 50)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds of (floor, omnikit, HF) per setting")
    ap.add_argument("--prompts", type=int, default=120, help="written questions for the agreement (>= 100)")
    ap.add_argument("--answer-tokens", type=int, default=64)
    ap.add_argument("--smoke", action="store_true", help="a few tokens and prompts; report, write nothing")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.smoke:
        args.tokens, args.rounds, args.prompts, args.answer_tokens = 8, 1, 4, 8
    elif args.tokens < 50 or args.prompts < 100:
        ap.error("the committed result needs --tokens >= 50 and --prompts >= 100 (use --smoke for a quick check)")

    load_start = [round(x, 2) for x in os.getloadavg()]
    if load_start[0] > MAX_LOAD_1M and not args.smoke:
        print(f"REFUSED: the machine is busy (1-minute load average {load_start[0]} > {MAX_LOAD_1M}); run again "
              "when it is quiet. Nothing written.", file=sys.stderr)
        sys.exit(3)

    torch.manual_seed(0)
    m = HFCausalLM(HFCausalLMConfig(model=args.model, dtype="float32", device="cpu"))
    fingerprint = m.fingerprint()
    questions = prompts(args.prompts)
    kernel_lib = kernels.load()
    other = OtherLoad()

    # ---- timings: every (threads, dtype), alternating floor / omnikit / HF rounds
    timing: dict[str, dict[str, Any]] = {}
    other.start()
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name in args.dtypes:
            m.prepare_inference(name)
            fast = m.fast_decoder
            nbytes = fast.weight_bytes() if fast is not None else None
            hf_model = None
            if name != "int8":
                hf_model = m.llm if name == "float32" else copy.deepcopy(m.llm).to(getattr(torch, name))
            embeds = context_embeddings(m)
            time_steps(m, 4)  # warm-up (kernels loaded, caches allocated)
            steps: list[float] = []
            hf: list[float] = []
            floor: list[float] = []
            firsts: list[float] = []
            context = 0
            for _ in range(args.rounds):
                if nbytes is not None:
                    floor += time_floor(nbytes, 15)
                s, context, first = time_steps(m, args.tokens)
                steps += s
                firsts.append(first)
                if hf_model is not None:
                    hf += time_hf_generate(hf_model, embeds, args.tokens)
            entry: dict[str, Any] = {
                "path": m.inference_path,
                "weight_bytes": nbytes,
                "context_positions": context,
                "timed_tokens": len(steps),
                "ms_per_token": median_ms(steps),
                "ms_per_token_p90": round(sorted(steps)[int(0.9 * (len(steps) - 1))] * 1e3, 2),
                "first_token_ms": round(statistics.median(firsts), 2),
                "floor_ms": median_ms(floor) if floor else None,
                "hf_generate_ms_per_token": median_ms(hf) if hf else None,
            }
            if fast is not None:
                entry["breakdown"] = step_breakdown(m, args.tokens)
                entry["one_c_call_per_step"] = fast.program is not None
            if floor:
                entry["ratio_to_floor"] = round(entry["ms_per_token"] / entry["floor_ms"], 2)
                entry["floor_GB_per_s"] = round(nbytes / (entry["floor_ms"] / 1e3) / 1e9, 1)
            timing.setdefault(name, {})[str(threads)] = entry
            print(f"threads={threads} {name}: {json.dumps(entry)}", flush=True)
            del hf_model
            gc.collect()
    other_cores = other.cores()

    # ---- agreement with the float32 training weights' greedy answers
    torch.set_num_threads(max(args.threads))
    m.release_inference()  # back on the training weights (Hugging Face forward, float32): the reference
    start = time.perf_counter()
    reference = answers(m, questions, args.answer_tokens)
    agreement: dict[str, dict[str, Any]] = {}
    for name in args.dtypes:
        m.prepare_inference(name)
        got = answers(m, questions, args.answer_tokens)
        same = [a == b for a, b in zip(got, reference, strict=True)]
        agreement[name] = {
            "agreement_with_fp32": round(sum(same) / len(same), 4),
            "mean_prefix_agreement": round(statistics.mean(prefix_agreement(a, b) for a, b in zip(got, reference, strict=True)), 4),
            "examples_differing": [
                {"prompt": q, "fp32": m.tokenizer.decode(b), name: m.tokenizer.decode(a)}
                for q, a, b, s in zip(questions, got, reference, same, strict=True) if not s
            ][:3],
        }
        print(f"{name}: agreement {agreement[name]['agreement_with_fp32']}", flush=True)
    agreement_s = time.perf_counter() - start
    assert m.fingerprint() == fingerprint, "the frozen weights changed"

    load_end = [round(x, 2) for x in os.getloadavg()]
    busy = other_cores is not None and other_cores > MAX_OTHER_CORES
    by_dtype = {name: {"threads": timing[name], **agreement[name]} for name in args.dtypes}
    default = DEFAULT_DTYPE if DEFAULT_DTYPE in timing else args.dtypes[0]
    best_threads = min(timing[default], key=lambda t: timing[default][t]["ms_per_token"])
    chosen = timing[default][best_threads]
    result: dict[str, Any] = {
        "dtype": default,
        "threads": int(best_threads),
        "ms_per_token": chosen["ms_per_token"],
        "floor_ms": chosen["floor_ms"],
        "ratio_to_floor": chosen.get("ratio_to_floor"),
        "hf_generate_ms_per_token": chosen["hf_generate_ms_per_token"],
        "agreement_with_fp32": agreement[default]["agreement_with_fp32"],
        "n_prompts": len(questions),
        "by_dtype": by_dtype,
        "bars": {"ratio_to_floor_max": 1.5, "agreement_with_fp32_min": 0.95,
                 "ms_per_token_below_hf_generate": True},
        "model": args.model,
        "llm_parameters": sum(p.numel() for p in m.llm.parameters()),
        "training_dtype": "float32",
        "fingerprint_unchanged": True,
        "kernels": str(kernel_lib.path) if kernel_lib is not None else None,
        "answer_tokens": args.answer_tokens,
        "agreement_wall_s": round(agreement_s, 1),
        "guard": {"max_load_1m_at_start": MAX_LOAD_1M, "max_other_cores_during_timing": MAX_OTHER_CORES,
                  "load_average_start": load_start, "load_average_end": load_end,
                  "other_processes_cores_during_timing": other_cores},
        "machine": machine_info(torch_threads=list(args.threads)),
        "command": "python benchmarks/bench_llm_decode.py " + " ".join(sys.argv[1:]),
    }
    print(json.dumps({k: v for k, v in result.items() if k != "by_dtype"}, indent=2))
    if args.smoke:
        print(f"smoke run: nothing written (other processes used {other_cores} cores; a real run "
              f"{'would be REFUSED' if busy else 'would pass the guard'})")
        return
    if busy:
        print(f"REFUSED: other processes used {other_cores} cores while timing (> {MAX_OTHER_CORES}); run again "
              "when the machine is quiet. Nothing written.", file=sys.stderr)
        sys.exit(3)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
