"""``evaluate_run`` end to end on a fake run directory: the smoke recipe's tiny random parts, a tiny tone world,
an empty schedule (no trained stage needed), an energy VAD. Numbers are meaningless; files and wiring are not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
from omegaconf import OmegaConf

from omnikit.config import load_recipe
from omnikit.evaluation.report import evaluate_run

ROOT = Path(__file__).resolve().parents[2]


def fake_run_dir(tmp: Path) -> Path:
    cfg = load_recipe(ROOT / "recipes" / "smoke.yaml")
    cfg = OmegaConf.merge(cfg, {
        "schedule": [],
        "data": {"tones": {"args": {"num_train": 1, "num_dev": 2}}},
        "inference": {"max_answer_tokens": 4, "decoder_max_tokens": 12, "first_chunk": 4, "chunk": 8,
                      "codec_context": 2},
        "eval": {"judge": False, "transcript_tokens": 4},
    })
    cfg.model.vad = OmegaConf.create({"name": "energy", "args": {}})  # replace the nodes, not merge args
    cfg.model.duplex_policy = OmegaConf.create({"name": "vad_endpoint", "args": {"endpoint_ms": 320}})
    run = tmp / "run"
    run.mkdir()
    (run / "recipe.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    logs = run / "logs" / "input_1_ctc"
    logs.mkdir(parents=True)
    (logs / "metrics.csv").write_text("epoch,step,train/loss,lr-AdamW\n0,4,3.5,0.1\n0,9,2.5,0.1\n")
    return run


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    run = fake_run_dir(tmp_path_factory.mktemp("eval"))
    out = run / "out"
    metrics = evaluate_run(run, out, limit=1)
    return run, out, metrics


def test_writes_report_metrics_plots_and_demo(evaluated):
    run, out, metrics = evaluated
    for name in ("report.md", "metrics.json", "demo/question.wav", "demo/answer.wav", "demo/transcript.txt"):
        assert (out / name).is_file(), name
    assert json.loads((out / "metrics.json").read_text())["parts"] == metrics["parts"]
    wav, sr = sf.read(out / "demo" / "question.wav")
    assert sr == 16000 and len(wav) > 1000
    assert "question (spoken):" in (out / "demo" / "transcript.txt").read_text()
    # the schedule is empty, but the logs of a stage named in the recipe's schedule would be plotted: none here
    report = (out / "report.md").read_text()
    assert report.startswith("# Evaluation of") and "## ASR" in report and "## Duplex" in report


def test_metrics_cover_every_section(evaluated):
    _, _, m = evaluated
    assert m["parts"] == {"asr": ["asr_dev"], "dialogue": "dialogue_dev", "duplex": "duplex_dev"}
    asr = m["asr"]["asr_dev"]
    assert asr["n"] == 1 and 0.0 <= asr["llm"]["cer"] and "ctc" in asr
    qa = m["spoken_qa"]
    assert qa["n"] == 1 and qa["n_fact"] == 0  # tone questions carry no reference fact
    assert any("no reference facts" in n for n in m["notes"])
    dx = m["duplex"]
    assert dx["n"] == 1 and dx["offline"]["chunks"] > 0 and 0.0 <= dx["offline"]["accuracy"] <= 1.0
    assert m["cost"]["eval_peak_rss_mb"] > 10 and m["cost"]["eval_seconds"]["total"] > 0
    if m["latency"]:  # the energy VAD hears the tones, the VAD-endpoint policy answers
        assert "latency" in m["plots"] and (evaluated[1] / "latency.png").is_file()
