"""``evaluate_run``: score a trained run on held-out data and write ``report.md``, ``metrics.json``, plots, a demo.

What is measured (see docs/evaluation.md): ASR (stage-1 CTC CER, stage-2 LLM transcription WER/CER, per voice),
spoken QA on held-out facts (written vs spoken accuracy through the streaming session), intelligibility of the
spoken answers (pocketsphinx), duplex (chunk state accuracy, false respond in pauses, decision delay), the
latency breakdown, and cost (training time per stage, eval peak memory).
"""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import soundfile as sf
import torch
from omegaconf import OmegaConf
from tqdm import tqdm

from omnikit.config.sections import EvalConfig
from omnikit.data.char_vocab import CharVocab
from omnikit.data.collate import load_cut_audio
from omnikit.evaluation import probes
from omnikit.evaluation.cost import peak_gpu_mb, peak_rss_mb, stage_costs
from omnikit.evaluation.duplex_metrics import (
    RESPOND,
    StateCounts,
    StreamOutcome,
    add_stream,
    decision_scores,
    first_speech_chunk,
    speech_end_time,
    state_scores,
)
from omnikit.evaluation.eval_config import pick_parts
from omnikit.evaluation.judges import get_transcriber, judge_available, missing_note
from omnikit.evaluation.latency import latency_breakdown, summarize
from omnikit.evaluation.plots import plot_latency, plot_training_curves
from omnikit.evaluation.qa import QARecord, qa_scores
from omnikit.evaluation.report_writer import write_report
from omnikit.evaluation.summary import summary
from omnikit.evaluation.text_metrics import error_rates
from omnikit.interfaces import SAMPLE_RATE

EXAMPLES = 5  # examples per section kept in metrics.json and the report


def _available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def voice_group(cut: Any) -> str:
    """The cut's voice, marked ``(held-out)`` when the voice is not heard in training; ``all`` if unknown."""
    custom = cut.custom or {}
    voice = custom.get("voice")
    if voice is None:
        return "all"
    return f"{voice} (held-out)" if custom.get("voice_seen") is False else str(voice)


def seen_group(cut: Any) -> str:
    seen = (cut.custom or {}).get("voice_seen")
    return "all" if seen is None else ("seen voices" if seen else "held-out voices")


def _resample(wav: torch.Tensor, sr: int, target: int = SAMPLE_RATE) -> torch.Tensor:
    import torchaudio.functional as AF

    wav = torch.as_tensor(wav, dtype=torch.float32).reshape(-1)
    return wav if sr == target else AF.resample(wav, sr, target)


def _take(cuts: Any, limit: int | None) -> list[Any]:
    out = []
    for i, cut in enumerate(cuts):
        if limit is not None and i >= limit:
            break
        out.append(cut)
    return out


# ------------------------------------------------------------------------------------------------ sections
def eval_asr(model: Any, cuts: Iterable[Any], part: str, transcript_tokens: int) -> dict[str, Any]:
    """Stage-1 CTC and stage-2 LLM transcripts of one ASR part against the supervision text."""
    vocab = CharVocab()
    refs, ctc_hyps, llm_hyps, voices, seen, examples = [], [], [], [], [], []
    has_ctc = getattr(model.encoder, "ctc_vocab_size", 0) == vocab.size
    for cut in tqdm(list(cuts), desc=f"eval: ASR {part}"):
        wav = load_cut_audio(cut, SAMPLE_RATE)
        ref = cut.supervisions[0].text if cut.supervisions else ""
        refs.append(ref)
        ctc = probes.ctc_transcript(model, wav, vocab) if has_ctc else None
        ctc_hyps.append(ctc or "")
        llm_hyps.append(probes.llm_transcript(model, wav, transcript_tokens))
        voices.append(voice_group(cut))
        seen.append(seen_group(cut))
        if len(examples) < EXAMPLES:
            examples.append({"ref": ref, "ctc": ctc, "llm": llm_hyps[-1], "voice": voices[-1]})
    out: dict[str, Any] = {"n": len(refs), "examples": examples}
    if has_ctc:
        out["ctc"] = error_rates(refs, ctc_hyps, voices)
        out["ctc"]["by_seen"] = error_rates(refs, ctc_hyps, seen)["by_group"]
    out["llm"] = error_rates(refs, llm_hyps, voices)
    out["llm"]["by_seen"] = error_rates(refs, llm_hyps, seen)["by_group"]
    return out


def eval_spoken_qa(model: Any, cuts: list[Any], part: str, judge: str | None, hibari: bool,
                   demo_dir: Path | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Written vs spoken answers to held-out questions; intelligibility; latency timings. Returns the metrics
    and the per-turn timings."""
    records, offline_records, timings, examples = [], [], [], []
    judge_pairs: list[tuple[str, str]] = []
    hibari_pairs: list[tuple[str, str]] = []
    max_tokens = model.settings.max_answer_tokens
    if judge:
        transcribe = get_transcriber(judge)
    if hibari:
        from omnikit.data.tts.hibari import synthesize
    for i, cut in enumerate(tqdm(cuts, desc=f"eval: spoken QA {part}")):
        custom = cut.custom or {}
        question = custom.get("question") or (cut.supervisions[0].text if cut.supervisions else "")
        reference = custom.get("reference") if custom.get("kind", "fact") == "fact" else None
        wav = load_cut_audio(cut, SAMPLE_RATE)
        written = model.llm.chat(question, max_new_tokens=max_tokens)
        turn = probes.spoken_turn(model, wav)
        offline = probes.offline_answer(model, wav, max_tokens)
        group = voice_group(cut)
        records.append(QARecord(question, reference, written, turn.text, group))
        offline_records.append(QARecord(question, reference, written, offline, group))
        timings += turn.timings
        heard = None
        if judge and turn.text and turn.audio.numel():
            heard = transcribe(_resample(turn.audio, turn.sample_rate))
            judge_pairs.append((turn.text, heard))
            if hibari:
                wav_h, sr_h = synthesize(turn.text)
                hibari_pairs.append((turn.text, transcribe(_resample(torch.from_numpy(wav_h), sr_h))))
        if len(examples) < EXAMPLES:
            examples.append({"question": question, "reference": reference, "written": written,
                             "spoken": turn.text, "offline": offline, "heard": heard, "voice": group,
                             "decisions": [d.get("decision") for d in turn.decisions]})
        if demo_dir is not None and i == 0:
            write_demo(demo_dir, wav, turn, question, written, heard)
    out = qa_scores(records)
    groups = sorted({r.group for r in records})
    if len(groups) > 1:
        out["by_group"] = {g: qa_scores([r for r in records if r.group == g]) for g in groups}
    out["offline"] = qa_scores(offline_records)
    out["examples"] = examples
    speech: dict[str, Any] = {"n": len(judge_pairs), "judge": judge}
    if judge_pairs:
        refs, hyps = zip(*judge_pairs, strict=True)
        speech["judge_wer_system"] = error_rates(list(refs), list(hyps))["wer"]
    if hibari_pairs:
        refs, hyps = zip(*hibari_pairs, strict=True)
        speech["judge_wer_hibari"] = error_rates(list(refs), list(hyps))["wer"]
    out["speech_output"] = speech
    return out, timings


def _speech_chunk(custom: dict[str, Any], labels: list[int]) -> int:
    """First chunk of user speech: from the stream's events when it has them (no speech at all: past the end),
    else chunk 0 (a stream whose speech starts at once, e.g. synthetic tones)."""
    events = custom.get("events")
    if events is None:
        return 0
    starts = [float(e["start"]) for e in events if e.get("kind") != "noise"]
    return first_speech_chunk(labels, min(starts)) if starts else len(labels)


def eval_duplex(model: Any, cuts: list[Any], part: str) -> dict[str, Any]:
    """Chunk state accuracy offline (state head over the whole stream) and the streaming session's decisions."""
    counts = StateCounts()
    outcomes = []
    for cut in tqdm(cuts, desc=f"eval: duplex {part}"):
        custom = cut.custom or {}
        labels = list(custom.get("state_labels") or [])
        if not labels:
            continue
        wav = load_cut_audio(cut, SAMPLE_RATE)
        add_stream(counts, probes.state_predictions(model, wav), labels, _speech_chunk(custom, labels))
        decisions = probes.stream_decisions(model, wav)
        outcomes.append(StreamOutcome(RESPOND in labels, speech_end_time(labels, custom.get("speech_end")),
                                      [t for t, d in decisions if probes.is_respond(d)]))
    streaming = decision_scores(outcomes)
    streaming["respond_delay_ms"] = summarize(streaming.pop("respond_delays_ms"))
    return {"n": len(outcomes), "offline": state_scores(counts), "streaming": streaming}


def write_demo(demo_dir: Path, question_wav: torch.Tensor, turn: probes.SpokenTurn, question: str,
               written: str, heard: str | None) -> None:
    """``question.wav`` (16 kHz), ``answer.wav`` (codec rate) and ``transcript.txt`` of one spoken exchange."""
    demo_dir.mkdir(parents=True, exist_ok=True)
    sf.write(demo_dir / "question.wav", question_wav.numpy(), SAMPLE_RATE, subtype="PCM_16")
    answer = turn.audio.reshape(-1).clamp(-1, 1).numpy() if turn.audio.numel() else torch.zeros(1).numpy()
    sf.write(demo_dir / "answer.wav", answer, turn.sample_rate, subtype="PCM_16")
    lines = [f"question (spoken): {question}", f"written-question answer (frozen LLM): {written}",
             f"spoken answer (system, text): {turn.text or '(no answer)'}"]
    if heard is not None:
        lines.append(f"spoken answer as the ASR judge hears it: {heard}")
    (demo_dir / "transcript.txt").write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------------------ entry point
def default_source(cfg: Any) -> str | None:
    """The data source the scheduled stages train on most (ties: schedule order); else the first under `data`."""
    used: list[str] = []
    for stage in cfg.get("schedule") or []:
        src = OmegaConf.select(cfg, f"stages.{stage}.data.source", default=None)
        if src and src in (cfg.get("data") or {}):
            used.append(str(src))
    if used:
        return max(dict.fromkeys(used), key=used.count)
    sources = list(cfg.get("data") or {})
    return sources[0] if sources else None


def evaluate_run(run_dir: Path, out_dir: Path | None = None, limit: int | None = None,
                 device: str = "cpu") -> dict[str, Any]:
    """Evaluate a trained run; write ``report.md``, ``metrics.json``, PNG plots and ``demo/`` into ``out_dir``
    (default ``run_dir/eval``). ``limit``: cuts per part at most (overrides the recipe's ``eval.limit``).
    Returns the metrics dict that ``metrics.json`` holds."""
    from omnikit.data.sources import open_source
    from omnikit.inference.dialogue_model import DialogueModel

    t_start = time.perf_counter()
    run_dir = Path(run_dir)
    if not (run_dir / "recipe.yaml").is_file():  # before anything is written: no stray RUN/eval/ folders
        raise FileNotFoundError(f"{run_dir} is not a run directory (no recipe.yaml)")
    if limit is not None and limit < 1:  # a report on zero examples would overwrite a real one with CER 0 %
        raise ValueError(f"limit must be at least 1, got {limit}")
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "eval"
    out_dir.mkdir(parents=True, exist_ok=True)
    model = DialogueModel.from_run_dir(run_dir, device=device, overrides={"inference": {"greedy": True}})
    cfg = model.recipe
    ecfg = EvalConfig.from_mapping(OmegaConf.to_container(cfg.get("eval") or OmegaConf.create(), resolve=True))
    limit = limit if limit is not None else ecfg.limit
    source = ecfg.source or default_source(cfg)
    if source is None:
        raise ValueError(f"{run_dir / 'recipe.yaml'} has no `data` source to evaluate on")
    plugin, root = open_source(cfg, run_dir, source)
    parts = pick_parts(ecfg, list(getattr(plugin, "parts", [])))
    schedule = list(cfg.get("schedule") or [])
    notes: list[str] = []
    judge = ecfg.judge_engine if ecfg.judge and judge_available(ecfg.judge_engine) else None
    hibari = bool(judge) and ecfg.hibari_reference and _available("hibari")
    if ecfg.judge and not judge:
        notes.append(missing_note(ecfg.judge_engine))
    if judge and ecfg.hibari_reference and not hibari:
        notes.append("hibari-tts is not installed: no hibari reference for the judge")
    metrics: dict[str, Any] = {"run_dir": str(run_dir), "recipe": str(cfg.get("name", "")), "device": device,
                               "limit": limit, "source": source, "parts": parts, "notes": notes}
    seconds: dict[str, float] = {}

    def lap(name: str, t0: float) -> None:
        seconds[name] = round(time.perf_counter() - t0, 2)

    t0 = time.perf_counter()
    metrics["asr"] = {p: eval_asr(model, _take(plugin.cuts(p, root), limit), p, ecfg.transcript_tokens)
                      for p in parts["asr"]}
    lap("asr", t0)
    timings: list[dict[str, Any]] = []
    if parts["dialogue"]:
        t0 = time.perf_counter()
        qa, timings = eval_spoken_qa(model, _take(plugin.cuts(parts["dialogue"], root), limit), parts["dialogue"],
                                     judge, hibari, out_dir / "demo" if ecfg.demo else None)
        metrics["speech_output"] = qa.pop("speech_output")
        metrics["spoken_qa"] = {"part": parts["dialogue"], **qa}
        if not any((c.custom or {}).get("reference") for c in _take(plugin.cuts(parts["dialogue"], root), limit)):
            notes.append(f"{parts['dialogue']} has no reference facts: accuracy is not defined, only agreement "
                         "of the spoken with the written answer")
        lap("spoken_qa", t0)
    if parts["duplex"]:
        t0 = time.perf_counter()
        metrics["duplex"] = {"part": parts["duplex"],
                             **eval_duplex(model, _take(plugin.cuts(parts["duplex"], root), limit), parts["duplex"])}
        lap("duplex", t0)
    metrics["latency"] = latency_breakdown(timings)
    plots: dict[str, str] = {}
    curves = plot_training_curves(run_dir / "logs", schedule, out_dir / "training_curves.png")
    if curves is not None:
        plots["training_curves"] = curves.name
    bars = plot_latency(metrics["latency"], out_dir / "latency.png")
    if bars is not None:
        plots["latency"] = bars.name
    seconds["total"] = round(time.perf_counter() - t_start, 2)
    metrics["cost"] = {"stages": stage_costs(run_dir, schedule), "eval_seconds": seconds,
                       "eval_peak_rss_mb": peak_rss_mb(), "eval_peak_gpu_mb": peak_gpu_mb()}
    metrics["plots"] = plots
    metrics = {"summary": summary(metrics, run_dir), **metrics}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    write_report(metrics, out_dir / "report.md")
    return metrics
