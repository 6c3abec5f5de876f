"""CLI exit codes: 0 on success, 2 on recipe/usage problems, 1 on runtime failures (one line)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from omnikit.cli.app import app

runner = CliRunner()


def recipe(tmp_path: Path, body: str) -> str:
    p = tmp_path / "r.yaml"
    p.write_text("omnikit: 1\nname: t\n" + body)
    return str(p)


def test_validate_ok_and_config_prints_resolved(fake_plugins, tmp_path):
    r = recipe(tmp_path, 'paths: {out: "runs/${name}"}\n' "model: {encoder: {name: fake_encoder, args: {vocab: 5}}}\n")
    res = runner.invoke(app, ["validate", r])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["config", r, "model.encoder.args.layers=7"])
    assert res.exit_code == 0 and "out: runs/t" in res.output and "layers: 7" in res.output


def test_validate_reports_all_problems_exit_2(fake_plugins, tmp_path):
    r = recipe(tmp_path, "model: {encoder: {name: fake_encodr, args: {}}, adapter: {name: fake_adapter, args: {kernal_size: 3}}}\n")
    res = runner.invoke(app, ["validate", r])
    assert res.exit_code == 2
    assert "2 problems" in res.output
    assert "did you mean 'fake_encoder'" in res.output and "did you mean 'kernel_size'" in res.output


def test_ls_show_and_plugins(fake_plugins):
    fake_plugins("omnikit.encoders", "broken", "omnikit_no_such_module_xyz:Thing", dist="broken-pkg")
    res = runner.invoke(app, ["ls", "encoder"])
    assert res.exit_code == 0
    assert "fake_encoder" in res.output and "A fake encoder for registry tests." in res.output
    assert "failed to import" in res.output
    res = runner.invoke(app, ["show", "encoder", "fake_encoder"])
    assert res.exit_code == 0
    assert "Number of blocks." in res.output and "??? (required)" in res.output
    res = runner.invoke(app, ["plugins"])
    assert res.exit_code == 0 and "broken-pkg" in res.output and "failed: encoder:broken" in res.output


def test_runtime_failure_is_one_line_exit_1(fake_plugins):
    fake_plugins("omnikit.encoders", "broken", "omnikit_no_such_module_xyz:Thing", dist="broken-pkg")
    res = runner.invoke(app, ["show", "encoder", "broken"])
    assert res.exit_code == 1
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: PluginImportError") and "broken-pkg" in lines[0]
    res = runner.invoke(app, ["show", "encoder", "broken", "--verbose"])
    assert res.exit_code == 1 and "Traceback" in res.output


def test_usage_errors_exit_2(fake_plugins, tmp_path):
    assert runner.invoke(app, ["ls", "vocoder"]).exit_code == 2
    assert runner.invoke(app, ["show", "encoder", "nope"]).exit_code == 2
    assert runner.invoke(app, ["validate", str(tmp_path / "missing.yaml")]).exit_code == 2
    r = recipe(tmp_path, "")
    dest = tmp_path / "copy.yaml"
    assert runner.invoke(app, ["cp", r, str(dest)]).exit_code == 0 and dest.exists()
    assert runner.invoke(app, ["cp", r, str(dest)]).exit_code == 2  # never overwrites


def test_cp_packaged_name_into_a_new_folder(tmp_path):
    res = runner.invoke(app, ["cp", "smoke", f"{tmp_path / 'mine'}/"])  # bare name; a trailing / means a folder
    assert res.exit_code == 0, res.output
    copied = tmp_path / "mine" / "smoke.yaml"
    assert copied.is_file()
    assert runner.invoke(app, ["validate", str(copied)]).exit_code == 0  # its includes still resolve


def test_yaml_syntax_error_is_a_recipe_error(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("model: {encoder: {name: x\n")
    res = runner.invoke(app, ["validate", str(p)])
    assert res.exit_code == 2 and "cannot parse" in res.output


# ---------------------------------------------------------------------------------------------- issue 15
ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "recipes" / "smoke.yaml")


def test_version_option():
    import omnikit

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"omnikit {omnikit.__version__}"


def test_config_validates_before_printing(fake_plugins, tmp_path):
    r = recipe(tmp_path, "model: {encoder: {name: fake_encoder, args: {vocab: 5, layrs: 3}}}\n")
    res = runner.invoke(app, ["config", r])
    assert res.exit_code == 2 and "did you mean 'layers'" in res.output and "vocab: 5" not in res.output
    res = runner.invoke(app, ["config", r, "--no-check"])  # still printable on purpose
    assert res.exit_code == 0 and "layrs: 3" in res.output


def test_eval_section_typo_stops_the_run_before_the_run_dir_is_written(fake_plugins, tmp_path):
    r = recipe(tmp_path, "model: {encoder: {name: fake_encoder, args: {vocab: 5}}}\neval: {limt: 3}\n")
    res = runner.invoke(app, ["validate", r])
    assert res.exit_code == 2 and "eval.limt" in res.output and "did you mean 'limit'" in res.output
    res = runner.invoke(app, ["run", r, "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 2 and not (tmp_path / "run").exists()  # no recipe.yaml carrying the typo


def test_override_of_a_missing_or_unscheduled_stage_is_an_error():
    res = runner.invoke(app, ["validate", SMOKE, "stages.input_1_ctx.optim.lr=1e-3"])
    assert res.exit_code == 2, res.output
    assert "stages.input_1_ctx.optim.lr: no stage 'input_1_ctx'" in res.output
    assert "did you mean 'input_1_ctc'" in res.output
    res = runner.invoke(app, ["validate", SMOKE, "schedule=[input_1_ctc]", "stages.input_2_align.optim.lr=1e-3"])
    assert res.exit_code == 2 and "not in the schedule" in res.output, res.output
    # a new stage that the overrides also schedule is fine
    res = runner.invoke(app, ["validate", SMOKE, "schedule=[input_1_ctc,again]", "stages.again.trainable=[encoder]",
                              "stages.again.objectives.ctc=1.0", "stages.again.data.source=world",
                              "stages.again.data.train=asr_train"])
    assert res.exit_code == 0, res.output


def test_eval_refuses_a_missing_run_dir_and_limit_0_without_writing(tmp_path):
    from omnikit.evaluation.report import evaluate_run

    res = runner.invoke(app, ["eval", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "no such run directory" in res.output
    assert not (tmp_path / "nope").exists()
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    (run / "recipe.yaml").write_text("omnikit: 1\nname: t\n")
    (run / "eval" / "report.md").write_text("the earlier report")
    res = runner.invoke(app, ["eval", str(run), "--limit", "0"])
    assert res.exit_code == 2 and "--limit" in res.output
    assert (run / "eval" / "report.md").read_text() == "the earlier report"
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        evaluate_run(tmp_path / "nope2")
    assert not (tmp_path / "nope2").exists()
    with pytest.raises(ValueError, match="at least 1"):
        evaluate_run(run, tmp_path / "out", limit=0)
    assert not (tmp_path / "out").exists()


def test_chat_names_a_folder_input_and_refuses_an_empty_answer(tmp_path, monkeypatch):
    import torch

    from omnikit.inference import chat, dialogue_model

    folder = tmp_path / "questions"
    folder.mkdir()
    res = runner.invoke(app, ["chat", str(tmp_path), "--input", str(folder)])
    assert res.exit_code == 2 and "is a folder, not an audio file" in res.output, res.output

    # a turn decided 'respond' whose answer has no text and no audio (60 s of noise, energy VAD)
    noise = tmp_path / "noise.wav"
    import soundfile as sf

    sf.write(noise, (torch.rand(16000) - 0.5).numpy(), 16000)

    class FakeDriver:
        def __init__(self, model, **_):
            pass

        def run(self, wavs, interrupt_at=None):
            return chat.ChatResult(turns=[chat.TurnResult(0, "", False, 0.0, {})],
                                   decisions=[{"t": 1.0, "decision": "respond"}], audio=torch.zeros(0))

    monkeypatch.setattr(dialogue_model.DialogueModel, "from_run_dir", classmethod(lambda cls, *a, **k: object()))
    monkeypatch.setattr(chat, "ChatDriver", FakeDriver)
    out = tmp_path / "answer.wav"
    res = runner.invoke(app, ["chat", str(tmp_path), "--input", str(noise), "--output", str(out)])
    assert res.exit_code == 1 and "no answer" in res.output and "no text and no audio" in res.output, res.output
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- issue 16
def test_a_stage_option_typo_stops_the_run_before_anything_starts(fake_plugins, tmp_path):
    r = recipe(tmp_path, "model: {encoder: {name: fake_encoder, args: {vocab: 5}}}\nschedule: [s]\n"
                         "stages: {s: {trainable: [encoder], trainer: {max_step: 3}, optim: {lrr: 0.1}}}\n"
                         "inference: {speech_tracker: {min_silence: 5}}\n")
    res = runner.invoke(app, ["run", r, "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 2 and "3 problems" in res.output, res.output
    for where, near in (("stages.s.trainer.max_step", "max_steps"), ("stages.s.optim.lrr", "lr"),
                        ("inference.speech_tracker.min_silence", "min_silence_ms")):
        assert f"{where}: unknown key; did you mean '{near}'?" in res.output
    assert not (tmp_path / "run").exists()


def test_run_trains_then_the_cli_evaluates_when_the_recipe_has_an_eval_section(fake_plugins, tmp_path, monkeypatch):
    from omnikit.evaluation import report
    from omnikit.training import runner as stage_runner

    calls: list[tuple] = []
    monkeypatch.setattr(stage_runner, "run_recipe", lambda cfg, out, **kw: calls.append(("train", out, kw)))

    def fake_eval(out, *a, **kw):
        calls.append(("eval", out))
        (out / "eval" / "demo").mkdir(parents=True, exist_ok=True)
        (out / "eval" / "demo" / "question.wav").write_bytes(b"")

    monkeypatch.setattr(report, "evaluate_run", fake_eval)
    body = "model: {encoder: {name: fake_encoder, args: {vocab: 5}}}\nschedule: [s]\nstages: {s: {trainable: [encoder]}}\n"
    run = tmp_path / "run"
    with_eval = recipe(tmp_path, body + "eval: {limit: 2}\n")
    res = runner.invoke(app, ["run", with_eval, "--run-dir", str(run)])
    assert res.exit_code == 0, res.output
    assert [c[0] for c in calls] == ["train", "eval"] and calls[1][1] == run
    run = run.resolve()
    assert f"report: {run / 'eval' / 'report.md'}" in res.output
    # the closing lines name the demo and the exact chat command for the finished run
    assert f"talk to it: omnikit chat {run} --input {run / 'eval' / 'demo' / 'question.wav'}" in res.output
    for extra in (["--stage", "s"], ["--dry-run"]):  # one stage, or a dry run: no report
        calls.clear()
        assert runner.invoke(app, ["run", with_eval, "--run-dir", str(run), *extra]).exit_code == 0
        assert [c[0] for c in calls] == ["train"], extra
    calls.clear()
    assert runner.invoke(app, ["run", recipe(tmp_path, body), "--run-dir", str(run)]).exit_code == 0
    assert [c[0] for c in calls] == ["train"]  # no eval section: training only
