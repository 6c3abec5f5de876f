"""Does the spoken question reach the frozen LLM like the written one? The input side of a trained run, measured.

Reads a run directory whose input stages are done (e.g. ``runs/quickstart`` after ``input_1_ctc`` and
``input_2_state``) and reports on held-out material of its speech world:

* ``cer_seen`` / ``cer_heldout``: CER of the text the LLM reads (the connector's words; the CTC greedy transcript
  for other adapters) on held-out sentences (asr dev + test), by seen / held-out voice;
* ``written_accuracy``, ``qa_ratio`` (spoken / written accuracy on held-out fact questions) and
  ``spoken_written_agreement`` (spoken answer == written answer, all held-out questions): greedy answers of the
  frozen LLM to the written question and to the spoken one (encoder -> adapter -> LLM, offline twin of the stream);
* ``state_accuracy`` / ``false_respond``: the state head per 160 ms chunk over held-out duplex streams;
* ``train_minutes``: wall time of the run's input stages.

    python benchmarks/bench_input_understanding.py runs/quickstart [--variant NAME] [--limit N]

Results merge into ``benchmarks/results/input_understanding.json``: the top-level keys are the variant given by
``--main`` (default: this run), ``by_variant`` keeps every variant measured.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from tqdm import tqdm

from omnikit.data.char_vocab import CharVocab
from omnikit.data.collate import load_cut_audio
from omnikit.data.sources import open_source
from omnikit.evaluation import probes
from omnikit.evaluation.duplex_metrics import StateCounts, add_stream, state_scores
from omnikit.evaluation.machine import machine_info
from omnikit.evaluation.qa import QARecord, qa_scores
from omnikit.evaluation.report import _speech_chunk
from omnikit.evaluation.text_metrics import cer
from omnikit.inference.dialogue_model import DialogueModel
from omnikit.interfaces import SAMPLE_RATE
from omnikit.model.checkpoints import is_done, merged_weights, read_done

INPUT_STAGES = ("input_0_ctc_head", "input_1_ctc", "input_2_state", "input_2_align", "input_3_dialogue")
OUT = Path(__file__).parent / "results" / "input_understanding.json"


def load_input_side(run_dir: Path) -> tuple[DialogueModel, list[str]]:
    cfg = OmegaConf.load(run_dir / "recipe.yaml")
    stages = [s for s in cfg.schedule if s in INPUT_STAGES]
    missing = [s for s in stages if not is_done(run_dir, s)]
    if missing:
        raise SystemExit(f"{run_dir}: input stages not done: {', '.join(missing)}")
    return DialogueModel.from_recipe(cfg, merged_weights(run_dir, stages)), stages


def heard_text(model: DialogueModel, wav: torch.Tensor) -> str:
    """The words the LLM reads (a connector's text; otherwise the LLM's own transcription)."""
    return probes.llm_transcript(model, wav)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--variant", default=None, help="name of this variant in by_variant (default: the run's name)")
    ap.add_argument("--limit", type=int, default=0, help="at most this many items per part (0 = all)")
    ap.add_argument("--main", action="store_true", help="also write this variant's numbers as the top-level keys")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMNIKIT_THREADS", "2")))
    load_before = os.getloadavg()
    t0 = time.time()
    model, stages = load_input_side(args.run_dir)
    cfg = model.recipe
    plugin, root = open_source(cfg, args.run_dir, "world")
    take = (lambda cs: list(cs)[: args.limit]) if args.limit else list
    vocab = CharVocab()

    # 1. what the LLM reads, on held-out sentences
    refs: dict[str, list[str]] = {"seen": [], "heldout": []}
    hyps: dict[str, list[str]] = {"seen": [], "heldout": []}
    examples = []
    for part in ("asr_dev", "asr_test"):
        for cut in tqdm(take(plugin.cuts(part, root)), desc=f"heard text {part}"):
            group = "seen" if (cut.custom or {}).get("voice_seen") else "heldout"
            ref = vocab.normalize(cut.supervisions[0].text)
            hyp = heard_text(model, load_cut_audio(cut, SAMPLE_RATE))
            refs[group].append(ref)
            hyps[group].append(hyp)
            if len(examples) < 8:
                examples.append({"ref": ref, "heard": hyp, "voice": (cut.custom or {}).get("voice")})

    # 2. written vs spoken answers to held-out questions
    llm = model.llm
    max_tokens = model.settings.max_answer_tokens
    records, qa_examples = [], []
    for part in ("dialogue_dev", "dialogue_test"):
        for cut in tqdm(take(plugin.cuts(part, root)), desc=f"spoken QA {part}"):
            custom = cut.custom or {}
            question = custom.get("question") or cut.supervisions[0].text
            reference = custom.get("reference") if custom.get("kind") == "fact" else None
            written = llm.chat(question, max_new_tokens=max_tokens)
            spoken = probes.offline_answer(model, load_cut_audio(cut, SAMPLE_RATE), max_tokens)
            records.append(QARecord(question, reference, written, spoken))
            if len(qa_examples) < 8:
                qa_examples.append({"question": question, "reference": reference, "written": written,
                                    "spoken": spoken})
    qa = qa_scores(records)

    # 3. the state head over held-out duplex streams
    counts = StateCounts()
    for cut in tqdm(take(plugin.cuts("duplex_test", root)), desc="duplex states"):
        custom = cut.custom or {}
        labels = list(custom.get("state_labels") or [])
        if labels:
            pred = probes.state_predictions(model, load_cut_audio(cut, SAMPLE_RATE))
            add_stream(counts, pred, labels, _speech_chunk(custom, labels))
    states = state_scores(counts)

    train_s = sum(float(read_done(args.run_dir, s).get("seconds") or 0.0) for s in stages)
    numbers = {
        "cer_seen": round(cer(refs["seen"], hyps["seen"]), 4) if refs["seen"] else None,
        "cer_heldout": round(cer(refs["heldout"], hyps["heldout"]), 4) if refs["heldout"] else None,
        "spoken_written_agreement": qa.get("agreement"),
        "qa_ratio": qa.get("spoken_to_written"),
        "written_accuracy": qa.get("written_accuracy"),
        "spoken_accuracy": qa.get("spoken_accuracy"),
        "n_questions": qa.get("n"),
        "n_fact_questions": qa.get("n_fact"),
        "n_sentences": {k: len(v) for k, v in refs.items()},
        "train_minutes": round(train_s / 60.0, 2),
        "cores": os.cpu_count(),
        "state_accuracy": states.get("accuracy"),
        "false_respond": states.get("false_respond_rate"),
        "state_recall": states.get("recall"),
        "state_chunks": states.get("chunks"),
        "encoder": str(cfg.model.encoder.name),
        "adapter": str(cfg.model.adapter.name),
        "stages": stages,
    }
    variant = args.variant or str(cfg.name)
    result = json.loads(args.out.read_text()) if args.out.is_file() else {}
    result.setdefault("by_variant", {})[variant] = numbers
    if args.main or not any(k for k in result if k != "by_variant"):
        keep = {"by_variant": result["by_variant"]}
        result = {**numbers, "variant": variant, **keep}
    result.setdefault("examples", {})[variant] = {"heard": examples, "qa": qa_examples}
    result["machine"] = machine_info(load_average_before=[round(x, 2) for x in load_before],
                                     load_average_after=[round(x, 2) for x in os.getloadavg()])
    result["eval_seconds"] = round(time.time() - t0, 1)
    result["command"] = f"python benchmarks/bench_input_understanding.py {args.run_dir}" + (
        f" --variant {args.variant}" if args.variant else "") + (" --main" if args.main else "")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(numbers, indent=2))


if __name__ == "__main__":
    main()
