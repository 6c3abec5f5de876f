"""CLI exit codes: 0 on success, 2 on recipe/usage problems, 1 on runtime failures (one line)."""

from __future__ import annotations

from pathlib import Path

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
