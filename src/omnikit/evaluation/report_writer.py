"""``report.md`` from the metrics dict of ``evaluate_run``: tables per section, plots embedded, notes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MAX_CELL = 160  # characters of one table cell (long answers are cut)


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}"
    text = "".join(ch if ch.isprintable() else " " for ch in str(v))
    text = text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"
    return text.replace("|", "\\|")


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    """A Markdown table (values formatted, pipes escaped)."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return out + [""]


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * float(v):.1f} %"


def _asr_lines(asr: dict[str, Any]) -> list[str]:
    lines = ["## ASR", "",
             "Stage-1 CTC head (greedy) and stage-2 LLM transcription (greedy) against the reference text.", ""]
    rows = []
    for part, m in asr.items():
        for probe in ("ctc", "llm"):
            if probe not in m:
                continue
            r = m[probe]
            rows.append([part, probe, "all", _pct(r["cer"]), _pct(r["wer"]), r["n"]])
            groups = {**r.get("by_group", {}), **r.get("by_seen", {})}
            if len(groups) > 1:
                for g, gr in groups.items():
                    rows.append([part, probe, g, _pct(gr["cer"]), _pct(gr["wer"]), gr["n"]])
    lines += table(["part", "probe", "voice", "CER", "WER", "n"], rows)
    for part, m in asr.items():
        if m.get("examples"):
            lines += [f"Examples ({part}):", ""]
            lines += table(["reference", "CTC", "LLM"], [[e["ref"], e["ctc"], e["llm"]] for e in m["examples"]])
    return lines


def _qa_lines(qa: dict[str, Any], speech: dict[str, Any] | None) -> list[str]:
    lines = [f"## Spoken QA ({qa.get('part')})", "",
             "Accuracy: the answer states the reference fact (fact questions only). Written: the frozen LLM on the "
             "written question. Spoken: the question streamed through the session (VAD, state head, duplex policy). "
             "Offline: encoder -> adapter -> LLM on the whole question, no duplex.", ""]
    off = qa.get("offline", {})
    lines += table(
        ["metric", "streaming (product)", "offline"],
        [["questions (fact)", f"{qa.get('n')} ({qa.get('n_fact')})", f"{off.get('n')} ({off.get('n_fact')})"],
         ["written accuracy", _pct(qa.get("written_accuracy")), _pct(off.get("written_accuracy"))],
         ["spoken accuracy", _pct(qa.get("spoken_accuracy")), _pct(off.get("spoken_accuracy"))],
         ["spoken / written", qa.get("spoken_to_written"), off.get("spoken_to_written")],
         ["spoken answer = written answer", _pct(qa.get("agreement")), _pct(off.get("agreement"))],
         ["WER spoken vs written answer", _pct(qa.get("answer_wer")), _pct(off.get("answer_wer"))],
         ["answered", _pct(qa.get("answered")), _pct(off.get("answered"))]],
    )
    if qa.get("by_group"):
        lines += table(["voice", "n", "spoken accuracy", "written accuracy", "agreement"],
                       [[g, m.get("n"), _pct(m.get("spoken_accuracy")), _pct(m.get("written_accuracy")),
                         _pct(m.get("agreement"))] for g, m in qa["by_group"].items()])
    if qa.get("examples"):
        lines += ["Examples:", ""]
        lines += table(["question", "reference", "written", "spoken", "judge heard"],
                       [[e["question"], e["reference"], e["written"], e["spoken"], e["heard"]] for e in qa["examples"]])
    if speech:
        lines += ["### Output speech intelligibility", "",
                  "pocketsphinx WER of the spoken answers (resampled to 16 kHz) against their text, next to the "
                  "judge's WER on hibari's rendering of the same text (the judge's floor).", ""]
        lines += table(["answers judged", "WER system voice", "WER hibari"],
                       [[speech.get("n"), _pct(speech.get("judge_wer_system")), _pct(speech.get("judge_wer_hibari"))]])
    return lines


def _duplex_lines(dx: dict[str, Any]) -> list[str]:
    off, st = dx.get("offline", {}), dx.get("streaming", {})
    lines = [f"## Duplex ({dx.get('part')})", "",
             "Offline: state-head argmax at each 160 ms chunk's last position vs the labels. Streaming: the "
             "session's decisions (VAD + state head + duplex policy).", ""]
    rows = [["streams", dx.get("n")], ["labelled chunks", off.get("chunks")],
            ["chunk state accuracy", _pct(off.get("accuracy"))]]
    rows += [[f"recall {k}", _pct(v)] for k, v in (off.get("recall") or {}).items()]
    rows += [["false respond rate (listen chunks after speech started)", _pct(off.get("false_respond_rate"))],
             ["streaming: respond before the question ended", _pct(st.get("premature_rate"))],
             ["streaming: question never answered", _pct(st.get("missed_rate"))],
             ["streaming: respond to a statement/noise stream", _pct(st.get("false_respond_streams"))]]
    delay = st.get("respond_delay_ms")
    if delay:
        rows += [["respond delay after speech end, median (ms)", delay["median"]],
                 ["respond delay after speech end, p90 (ms)", delay["p90"]]]
    return lines + table(["metric", "value"], rows)


def _latency_lines(lat: dict[str, Any], plots: dict[str, str]) -> list[str]:
    lines = ["## Latency", "", "The paper's breakdown over the spoken QA answers (wall time, ms).", ""]
    lines += table(["stage", "median", "p90", "n"], [[k, v["median"], v["p90"], v["n"]] for k, v in lat.items()])
    if "latency" in plots:
        lines += [f"![latency]({plots['latency']})", ""]
    return lines


def _cost_lines(cost: dict[str, Any], plots: dict[str, str]) -> list[str]:
    lines = ["## Cost", ""]
    stages = cost.get("stages") or {}
    if stages:
        extra = sorted({k for r in stages.values() for k in r} - {"seconds", "steps", "trained_parameters",
                                                                   "loss_start", "loss_end"})
        lines += table(["stage", "seconds", "steps", "trained params", "loss start", "loss end", *extra],
                       [[s, r.get("seconds"), r.get("steps"), r.get("trained_parameters"), r.get("loss_start"),
                         r.get("loss_end"), *[r.get(k) for k in extra]] for s, r in stages.items()])
    secs = cost.get("eval_seconds") or {}
    lines += table(["eval", "value"], [*[[f"{k} (s)", v] for k, v in secs.items()],
                                       ["peak RSS (MiB)", cost.get("eval_peak_rss_mb")],
                                       ["peak GPU memory (MiB)", cost.get("eval_peak_gpu_mb")]])
    if "training_curves" in plots:
        lines += ["### Training curves", "", f"![training curves]({plots['training_curves']})", ""]
    return lines


def render_report(metrics: dict[str, Any]) -> str:
    """The Markdown text of the report (sections present in ``metrics`` only)."""
    plots = metrics.get("plots") or {}
    lines = [f"# Evaluation of `{metrics.get('run_dir')}`", "",
             f"Recipe `{metrics.get('recipe')}`, data source `{metrics.get('source')}`, device "
             f"`{metrics.get('device')}`, at most {metrics.get('limit') or 'all'} cuts per part.", ""]
    if metrics.get("notes"):
        lines += ["Notes:", "", *[f"- {n}" for n in metrics["notes"]], ""]
    if metrics.get("asr"):
        lines += _asr_lines(metrics["asr"])
    if metrics.get("spoken_qa"):
        lines += _qa_lines(metrics["spoken_qa"], metrics.get("speech_output"))
    if metrics.get("duplex"):
        lines += _duplex_lines(metrics["duplex"])
    if metrics.get("latency"):
        lines += _latency_lines(metrics["latency"], plots)
    if metrics.get("cost"):
        lines += _cost_lines(metrics["cost"], plots)
    lines += ["Demo: `demo/question.wav`, `demo/answer.wav`, `demo/transcript.txt`.", ""] if metrics.get(
        "spoken_qa") else []
    return "\n".join(lines)


def write_report(metrics: dict[str, Any], path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(metrics))
    return path
