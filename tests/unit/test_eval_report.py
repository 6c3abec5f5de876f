"""Report writing on a fake metrics dict, and the training-curve / latency plots on tiny fake logs."""

from __future__ import annotations

from pathlib import Path

from omnikit.config.sections import EvalConfig
from omnikit.evaluation.cost import peak_rss_mb, stage_costs
from omnikit.evaluation.eval_config import pick_parts
from omnikit.evaluation.plots import curve_keys, plot_latency, plot_training_curves, read_metrics_csv
from omnikit.evaluation.report_writer import render_report, write_report

FAKE = {
    "run_dir": "runs/x", "recipe": "quickstart", "device": "cpu", "limit": 10, "source": "world",
    "notes": ["hibari-tts is not installed"],
    "asr": {"asr_test": {"n": 2, "examples": [{"ref": "a|b", "ctc": "ab", "llm": "a b\nc"}],
                         "ctc": {"cer": 0.25, "wer": 0.5, "n": 2},
                         "llm": {"cer": 0.1, "wer": 0.2, "n": 2,
                                 "by_group": {"piper:joe": {"cer": 0.0, "wer": 0.0, "n": 1},
                                              "espeak:en-029 (held-out)": {"cer": 0.2, "wer": 0.4, "n": 1}}}}},
    "spoken_qa": {"part": "dialogue_test", "n": 4, "n_fact": 3, "written_accuracy": 0.6667,
                  "spoken_accuracy": 0.3333, "spoken_to_written": 0.5, "agreement": 0.25, "offline": {"n": 4},
                  "examples": []},
    "speech_output": {"n": 3, "judge_wer_system": 0.4, "judge_wer_hibari": 0.08},
    "duplex": {"part": "duplex_test", "n": 5, "offline": {"chunks": 40, "accuracy": 0.9, "recall": {"respond": 0.5}},
               "streaming": {"premature_rate": 0.2, "respond_delay_ms": {"median": 320.0, "p90": 480.0}}},
    "latency": {"decision_to_first_pcm_ms": {"median": 210.5, "p90": 400.0, "n": 3}},
    "cost": {"stages": {"input_1_ctc": {"seconds": 60.0, "steps": 30, "peak_memory_mb": 900}},
             "eval_seconds": {"total": 12.0}, "eval_peak_rss_mb": 800.0},
    "plots": {"latency": "latency.png"},
}


def test_report_has_every_section_and_numbers(tmp_path: Path):
    text = render_report(FAKE)
    for heading in ("## ASR", "## Spoken QA (dialogue_test)", "### Output speech intelligibility",
                    "## Duplex (duplex_test)", "## Latency", "## Cost"):
        assert heading in text
    assert "| asr_test | llm | espeak:en-029 (held-out) | 20.0 % | 40.0 % | 1 |" in text
    assert "| spoken accuracy | 33.3 % |" in text
    assert "| respond delay after speech end, median (ms) | 320.000 |" not in text  # floats >= 100: no decimals
    assert "| respond delay after speech end, median (ms) | 320 |" in text
    assert "peak_memory_mb" in text  # a memory field the runner recorded becomes a column
    assert "![latency](latency.png)" in text
    assert "a\\|b" in text and "a b c" in text  # pipes escaped, newlines flattened
    path = write_report(FAKE, tmp_path / "r" / "report.md")
    assert path.read_text() == text


def test_report_without_sections_is_short():
    text = render_report({"run_dir": "r", "recipe": "x"})
    assert "## ASR" not in text and "## Duplex" not in text and "Demo" not in text


def test_training_curves_and_latency_plots(tmp_path: Path):
    logs = tmp_path / "logs" / "input_3_dialogue"
    logs.mkdir(parents=True)
    (logs / "metrics.csv").write_text(
        "epoch,lr-AdamW/pg1,step,train/loss,train/a/loss,train/b/loss,train/b/acc,train/a/count,val/loss\n"
        ",0.1,4,,,,,,\n0,,4,3.0,2.0,1.0,0.5,3,\n0,,9,2.0,1.5,0.5,0.7,3,\n0,,9,,,,,,2.2\n")
    series = read_metrics_csv(logs / "metrics.csv")
    assert series["train/loss"] == [(4.0, 3.0), (9.0, 2.0)] and series["val/loss"] == [(9.0, 2.2)]
    assert not any(k.startswith("lr-") for k in series)
    losses, accs = curve_keys(series)
    assert losses == ["train/a/loss", "train/b/loss", "train/loss", "val/loss"] and accs == ["train/b/acc"]
    assert curve_keys({"train/loss": [], "train/ctc/loss": []}) == (["train/loss"], [])
    png = plot_training_curves(tmp_path / "logs", ["input_1_ctc", "input_3_dialogue"], tmp_path / "c.png")
    assert png is not None and png.read_bytes()[:4] == b"\x89PNG"
    assert plot_training_curves(tmp_path / "nothing", ["a"], tmp_path / "d.png") is None
    bars = plot_latency(FAKE["latency"], tmp_path / "lat.png")
    assert bars is not None and bars.stat().st_size > 1000
    assert plot_latency({}, tmp_path / "none.png") is None


def test_stage_costs_reads_done_json(tmp_path: Path):
    d = tmp_path / "stages" / "s1"
    d.mkdir(parents=True)
    (d / "done.json").write_text('{"seconds": 5.5, "steps": 10, "peak_rss_mb": 123, "trainer": {}}')
    costs = stage_costs(tmp_path, ["s1", "s2"])
    assert costs == {"s1": {"seconds": 5.5, "steps": 10, "trained_parameters": None, "loss_start": None,
                            "loss_end": None, "peak_rss_mb": 123}}
    assert peak_rss_mb() > 10


def test_eval_parts_prefer_test_and_fall_back_to_dev():
    world = ["asr_train", "asr_dev", "asr_test", "dialogue_dev", "dialogue_test", "duplex_dev", "duplex_test"]
    assert pick_parts(EvalConfig(), world) == {"asr": ["asr_dev", "asr_test"], "dialogue": "dialogue_test",
                                               "duplex": "duplex_test"}
    tones = ["asr_dev", "dialogue_dev", "duplex_train"]
    assert pick_parts(EvalConfig(), tones) == {"asr": ["asr_dev"], "dialogue": "dialogue_dev", "duplex": None}
    assert pick_parts(EvalConfig(asr_parts=["asr_test"]), world)["asr"] == ["asr_test"]


def test_eval_config_rejects_unknown_keys_and_default_source_follows_the_stages():
    import pytest
    from omegaconf import OmegaConf

    from omnikit.evaluation.report import default_source

    with pytest.raises(ValueError, match="limt"):
        EvalConfig.from_mapping({"limt": 3})
    cfg = OmegaConf.create({"data": {"world": {}, "tones": {}}, "schedule": ["a", "b", "c"],
                            "stages": {"a": {"data": {"source": "tones"}}, "b": {"data": {"source": "tones"}},
                                       "c": {"data": {"source": "world"}}}})
    assert default_source(cfg) == "tones"
    assert default_source(OmegaConf.create({"data": {"w": {}}, "schedule": []})) == "w"


def test_a_resumed_stage_keeps_its_whole_curve(tmp_path: Path):
    from omnikit.evaluation.plots import read_stage_metrics
    from omnikit.training.runner import keep_earlier_log

    logs = tmp_path / "input_1_ctc"
    logs.mkdir()
    header = "epoch,step,train/loss\n"
    (logs / "metrics.csv").write_text(header + "0,24,5.0\n0,49,4.0\n0,74,3.9\n")  # killed after step 74
    keep_earlier_log(logs)  # what the runner does before a resume
    assert not (logs / "metrics.csv").exists() and (logs / "metrics.part1.csv").is_file()
    (logs / "metrics.csv").write_text(header + "0,74,3.5\n0,99,3.0\n")  # resumed from the step-50 checkpoint
    assert read_stage_metrics(logs)["train/loss"] == [(24.0, 5.0), (49.0, 4.0), (74.0, 3.5), (99.0, 3.0)]
