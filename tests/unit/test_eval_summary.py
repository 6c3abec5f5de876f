"""The flat summary of an evaluated run reads the nested metrics and the world's build time."""

import json

from omnikit.evaluation.summary import summary


def test_summary_flattens_the_metrics(tmp_path):
    (tmp_path / "data" / "world").mkdir(parents=True)
    (tmp_path / "data" / "world" / "prepared.json").write_text(json.dumps(
        {"seconds": {"text": 10, "answers": 290, "assistant_audio": 300, "answers_cpu": 999}}))
    held = {"cer": 0.2, "wer": 0.4, "n": 10}
    metrics = {
        "source": "world",
        "asr": {"asr_dev": {"ctc": {"cer": 0.1, "by_seen": {"held-out voices": held}}},
                "asr_test": {"ctc": {"cer": 0.3, "by_seen": {"held-out voices": {"cer": 0.4, "n": 30}}}}},
        "spoken_qa": {"n": 120, "written_accuracy": 0.5, "spoken_to_written": 0.8, "agreement": 0.6},
        "speech_output": {"judge_wer_system": 0.3, "judge_wer_hibari": 0.05},
        "duplex": {"offline": {"accuracy": 0.96, "false_respond_rate": 0.01}},
        "latency": {"decision_to_first_pcm_ms": {"median": 480.0}},
        "cost": {"stages": {"a": {"seconds": 600}, "b": {"seconds": 600}}, "eval_seconds": {"total": 600}},
    }
    s = summary(metrics, tmp_path)
    assert s["ctc_cer_dev"] == 0.1 and s["ctc_cer_heldout"] == round((0.2 * 10 + 0.4 * 30) / 40, 4)
    assert (s["qa_ratio"], s["spoken_written_agreement"], s["n_questions"]) == (0.8, 0.6, 120)
    assert s["output_wer"] == 0.3 and s["output_wer_source"] == 0.05
    assert s["state_accuracy"] == 0.96 and s["false_respond"] == 0.01
    assert s["respond_to_first_pcm_p50_ms"] == 480.0
    assert s["wall_minutes"] == 40.0 and s["world_minutes"] == 10.0  # answers_cpu is not wall time


def test_summary_tolerates_missing_sections(tmp_path):
    s = summary({"source": "world"}, tmp_path)
    assert s["qa_ratio"] is None and s["wall_minutes"] == 0.0 and s["world_minutes"] is None
