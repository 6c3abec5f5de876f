"""Where the first speech segment of an answer is cut: tokens waited for against how well the cut is understood.

The first segment is what the user waits for (respond decision -> first text segment -> speech). For each rule,
over the greedy answers of the frozen LLM (its inference path, bfloat16 on CPU) to ``--prompts`` written
questions (the prompts of ``bench_llm_decode.py``):

* **tokens** the LLM must generate before the segmenter hands the first segment on (median, p90), and the time
  that costs at the decode speed measured by ``bench_llm_decode.py`` (first token + one step per further token,
  from ``benchmarks/results/llm_decode.json`` when it holds the new keys);
* **intelligibility** of that first segment spoken alone: the assistant's voice (``hibari:heart``, as
  ``cascade_tts`` and the speech world render it) reads the cleaned segment text, the Whisper tiny.en judge
  transcribes it, word error rate against the text (pooled over answers). A cut that leaves two words, or stops
  mid-phrase, is where a listener (and the judge) loses words.

Rules: ``sentence`` (the first segment waits for . ? !), ``comma`` (the default: also , : after 4 tokens),
``comma+words:N`` (also at the first word boundary after N tokens, without punctuation).

    python benchmarks/bench_segmenter_first_cut.py [--prompts 40] [--answer-tokens 48] [--words 6 10]

Writes ``benchmarks/results/segmenter_first_cut.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from omnikit.components.llms.hf_causal_lm import HFCausalLM, HFCausalLMConfig
from omnikit.evaluation.machine import machine_info
from omnikit.inference.segmenter import SegmenterConfig, TextSegmenter

RESULTS = Path(__file__).parent / "results" / "segmenter_first_cut.json"
DECODE = Path(__file__).parent / "results" / "llm_decode.json"
VOICE = "hibari:heart"


def _decode_prompts(n: int) -> list[str]:
    spec = importlib.util.spec_from_file_location("bench_llm_decode", Path(__file__).parent / "bench_llm_decode.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.prompts(n)


def first_cut(tokenizer: Any, ids: list[int], config: SegmenterConfig) -> tuple[str, int, int]:
    """(first segment text, its tokens, tokens generated when it was handed on) for a streamed answer, the way
    ``Session.step_answer`` feeds the segmenter (text deltas of the incrementally decoded answer)."""
    seg = TextSegmenter(config)
    text = ""
    for n, token in enumerate(ids, start=1):
        full = str(tokenizer.decode(ids[:n], skip_special_tokens=True))
        delta = ""
        if not full.endswith("\ufffd") and full.startswith(text):
            delta, text = full[len(text):], full
        out = seg.push(delta, token)
        if out is not None:
            return out.text, len(out), n
    out = seg.flush()
    return (out.text, len(out), len(ids)) if out is not None else ("", 0, len(ids))


def decode_speed() -> dict[str, Any] | None:
    """ms per token and first-token ms of the default inference dtype from the decode benchmark, if present."""
    if not DECODE.is_file():
        return None
    data = json.loads(DECODE.read_text())
    if "ms_per_token" not in data or "by_dtype" not in data:
        return None
    entry = data["by_dtype"][data["dtype"]]["threads"][str(data["threads"])]
    return {"ms_per_token": data["ms_per_token"], "first_token_ms": entry["first_token_ms"],
            "dtype": data["dtype"], "threads": data["threads"], "source": str(DECODE)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=40)
    ap.add_argument("--answer-tokens", type=int, default=48)
    ap.add_argument("--words", type=int, nargs="+", default=[6, 10], help="N of the comma+words:N rules")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from omnikit.data.world.voices import speak
    from omnikit.evaluation import whisper_judge
    from omnikit.evaluation.text_metrics import normalize, wer
    from omnikit.inference.segmenter import clean_segment_text

    load_start = [round(x, 2) for x in os.getloadavg()]
    m = HFCausalLM(HFCausalLMConfig(dtype="float32", device="cpu"))
    path = m.prepare_inference()
    questions = _decode_prompts(args.prompts)
    t0 = time.perf_counter()
    answers = []
    for q in questions:
        state = m.new_conversation()
        m.append_text_user_turn(state, q)
        answers.append(m.generate(state, max_new_tokens=args.answer_tokens)[0])
    answer_s = time.perf_counter() - t0

    rules = {"sentence": SegmenterConfig(first_segment_comma=False), "comma": SegmenterConfig()}
    rules.update({f"comma+words:{n}": SegmenterConfig(first_max_tokens=n) for n in args.words})
    speed = decode_speed()
    heard: dict[str, str] = {}  # cleaned text -> judge transcript (rules often agree on a segment)

    def listen(text: str) -> str:
        if text not in heard:
            utt = speak(VOICE, text, np.random.default_rng(0), speed_range=(1.0, 1.0))
            heard[text] = whisper_judge.transcribe(utt.wav, utt.sample_rate)
        return heard[text]

    t0 = time.perf_counter()
    results: dict[str, Any] = {}
    for name, config in rules.items():
        cuts = [first_cut(m.tokenizer, ids, config) for ids in answers]
        texts = [clean_segment_text(text) for text, _, _ in cuts]
        refs = [normalize(t) for t in texts if t]
        hyps = [normalize(listen(t)) for t in texts if t]
        waited = [n for _, _, n in cuts]
        entry: dict[str, Any] = {
            "config": {k: v for k, v in vars(config).items() if k in ("first_segment_comma", "min_tokens",
                                                                      "first_max_tokens")},
            "first_segment_tokens_median": statistics.median(n for _, n, _ in cuts),
            "tokens_generated_at_first_cut_median": statistics.median(waited),
            "tokens_generated_at_first_cut_p90": sorted(waited)[int(0.9 * (len(waited) - 1))],
            "first_segment_words_median": statistics.median(len(t.split()) for t in texts),
            "first_segment_wer": round(wer(refs, hyps), 4),
            "examples": [{"answer": m.tokenizer.decode(ids), "first_segment": t}
                         for ids, t in zip(answers[:3], texts[:3], strict=True)],
        }
        if speed is not None:
            ms = [speed["first_token_ms"] + (n - 1) * speed["ms_per_token"] for n in waited]
            entry["first_segment_ms_median_est"] = round(statistics.median(ms), 1)
        results[name] = entry
        print(name, json.dumps({k: v for k, v in entry.items() if k != "examples"}), flush=True)

    out = {
        "rules": results,
        "n_prompts": len(questions),
        "answer_tokens": args.answer_tokens,
        "llm_path": path,
        "voice": VOICE,
        "judge": "whisper tiny.en (faster-whisper), omnikit.evaluation.whisper_judge",
        "decode_speed": speed,
        "answers_wall_s": round(answer_s, 1),
        "listening_wall_s": round(time.perf_counter() - t0, 1),
        "load_average_start": load_start,
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "machine": machine_info(),
        "command": "python benchmarks/bench_segmenter_first_cut.py " + " ".join(sys.argv[1:]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
