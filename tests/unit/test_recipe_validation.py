"""Recipe loading and validation: includes, overrides, every problem reported with path and suggestion."""

from __future__ import annotations

from pathlib import Path

import pytest

from omnikit.config import RecipeError, find_problems, load_recipe, resolved, validate_recipe


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def base(tmp_path: Path) -> Path:
    write(tmp_path / "base.yaml", """
omnikit: 1
name: base
paths: {out: "runs/${name}"}
model:
  encoder: {name: fake_encoder, args: {layers: 4, vocab: 30}}
  adapter: {name: fake_adapter, args: {kernel_size: 5}}
""")
    return tmp_path


def test_include_then_file_then_overrides(fake_plugins, base):
    child = write(base / "child.yaml", "include: [base.yaml]\nname: child\nmodel: {encoder: {args: {dim: 16}}}\n")
    cfg = load_recipe(child, ["model.encoder.args.layers=6"])
    assert "include" not in cfg
    assert cfg.model.encoder.args.layers == 6 and cfg.model.encoder.args.dim == 16
    assert resolved(cfg).paths.out == "runs/child"
    validate_recipe(cfg)


def test_misspelled_name_and_argument_are_both_reported(fake_plugins, base):
    bad = write(base / "bad.yaml", """
include: base.yaml
model:
  encoder: {args: {layerz: 3}}
  adapter: {name: fake_adaptr}
""")
    with pytest.raises(RecipeError) as err:
        validate_recipe(load_recipe(bad))
    problems = {p.path: p for p in err.value.problems}
    assert problems["model.encoder.args.layerz"].suggestion == "layers"
    assert problems["model.adapter.name"].suggestion == "fake_adapter"
    text = str(err.value)
    assert "model.encoder.args.layerz: unknown argument; did you mean 'layers'?" in text
    assert "model.adapter.name: unknown adapter 'fake_adaptr'; did you mean 'fake_adapter'?" in text


def test_missing_required_wrong_type_and_unknown_keys(fake_plugins, tmp_path):
    bad = write(tmp_path / "r.yaml", """
omnikit: 1
nmae: typo
model:
  encoder: {name: fake_encoder, args: {layers: many, activation: tanh}}
  encodr: {name: fake_encoder}
paths: {out: "???"}
""")
    problems = {p.path: p for p in find_problems(load_recipe(bad))}
    assert problems["nmae"].suggestion == "name"
    assert "expected int" in problems["model.encoder.args.layers"].message
    assert "model.encoder.args.activation" in problems
    assert problems["model.encoder.args.vocab"].message == "required argument is missing"
    assert problems["model.encodr"].suggestion == "encoder"
    assert "missing (???)" in problems["paths.out"].message


def test_stage_schedule_and_objective_checks(fake_plugins, base):
    bad = write(base / "s.yaml", """
include: base.yaml
schedule: [one, tow]
stages:
  one: {trainable: [encoder], objectives: {ctc: 1.0}, data: {source: nowhere}, optimm: {}}
""")
    problems = {p.path: p for p in find_problems(load_recipe(bad))}
    assert "schedule[1]" in problems
    assert "unknown objective 'ctc'" in problems["stages.one.objectives.ctc"].message
    assert problems["stages.one.optimm"].suggestion == "optim"
    assert "no data source 'nowhere'" in problems["stages.one.data.source"].message


def test_bad_override_and_include_cycle(fake_plugins, tmp_path):
    a = write(tmp_path / "a.yaml", "include: b.yaml\n")
    write(tmp_path / "b.yaml", "include: a.yaml\n")
    with pytest.raises(RecipeError, match="include cycle"):
        load_recipe(a)
    ok = write(tmp_path / "ok.yaml", "omnikit: 1\n")
    with pytest.raises(RecipeError, match="key=value"):
        load_recipe(ok, ["justakey"])
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_inference_settings_are_checked(fake_plugins, tmp_path):
    bad = write(tmp_path / "i.yaml", "omnikit: 1\ninference: {top_kk: 3, temperature: hot}\n")
    problems = {p.path: p for p in find_problems(load_recipe(bad))}
    assert problems["inference.top_kk"].suggestion == "top_k"
    assert "expected float" in problems["inference.temperature"].message


def test_changing_a_component_name_replaces_its_args(fake_plugins, base):
    child = write(base / "swap.yaml", "include: base.yaml\nmodel: {encoder: {name: other, args: {x: 1}}}\n")
    cfg = load_recipe(child)
    assert dict(cfg.model.encoder.args) == {"x": 1}  # not merged with fake_encoder's args
    same = write(base / "same.yaml", "include: base.yaml\nmodel: {encoder: {args: {dim: 3}}}\n")
    assert load_recipe(same).model.encoder.args.layers == 4  # same component: args merge
    cfg = load_recipe(base / "base.yaml", ["model.adapter.name=fake_other"])
    assert "args" not in cfg.model.adapter
