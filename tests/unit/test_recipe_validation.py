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


# ---------------------------------------------------------------------------------------------- issue 16
TYPO_IN_EVERY_SECTION = """
omnikit: 1
name: typos
model:
  encoder: {name: fake_encoder, args: {vocab: 5}}
schedule: [one, two]
stages:
  one:
    trainable: [encoder]
    optim: {lrr: 1.0e-3, decay: cosin}
    trainer: {max_step: 3}
    batch: {max_durration: 10, on_bad_audio: skp, augment: {sped: [0.9, 1.1]}}
  two:
    trainable: [encoder]
    optim: {warmup: 5}
    batch: {augment: {time_masks: 2, freq_mask_widht: 4}}
inference:
  top_kk: 3
  speech_tracker: {min_silence: 500}
eval: {limt: 3}
"""
TYPOS = {  # config path -> the near miss the report suggests
    "stages.one.optim.lrr": "lr",
    "stages.one.optim.decay": "cosine",
    "stages.one.trainer.max_step": "max_steps",
    "stages.one.batch.max_durration": "max_duration",
    "stages.one.batch.on_bad_audio": "skip",
    "stages.one.batch.augment.sped": "speed",
    "stages.two.optim.warmup": "warmup_steps",
    "stages.two.batch.augment.freq_mask_widht": "freq_mask_width",
    "inference.top_kk": "top_k",
    "inference.speech_tracker.min_silence": "min_silence_ms",
    "eval.limt": "limit",
}


def test_a_typo_in_every_section_is_reported_at_once_with_its_path(fake_plugins, tmp_path):
    bad = write(tmp_path / "typos.yaml", TYPO_IN_EVERY_SECTION)
    with pytest.raises(RecipeError) as err:
        validate_recipe(load_recipe(bad))
    problems = {p.path: p for p in err.value.problems}
    assert set(problems) == set(TYPOS), sorted(problems)
    for path, near in TYPOS.items():
        assert problems[path].suggestion == near, (path, problems[path])
    text = str(err.value)
    assert f"{len(TYPOS)} problems" in text
    assert "stages.one.optim.lrr: unknown key; did you mean 'lr'?" in text
    assert "expected one of 'constant', 'cosine', 'inverse_sqrt', got 'cosin'" in text


def test_a_section_key_with_no_near_miss_lists_the_known_keys(fake_plugins, tmp_path):
    bad = write(tmp_path / "far.yaml", "omnikit: 1\nstages: {one: {trainer: {zzz: 1}, batch: [1]}}\n")
    problems = {p.path: p for p in find_problems(load_recipe(bad))}
    assert problems["stages.one.trainer.zzz"].suggestion is None
    assert "known: max_steps, precision" in problems["stages.one.trainer.zzz"].message
    assert problems["stages.one.batch"].message == "must be a mapping"


def test_the_shipped_recipes_validate_against_every_section_schema():
    root = Path(__file__).resolve().parents[2] / "recipes"
    for recipe in ("smoke.yaml", "quickstart.yaml", "freeze_omni.yaml"):
        assert find_problems(load_recipe(root / recipe)) == [], recipe


def test_the_parsers_the_code_runs_with_name_path_near_miss_and_known_keys():
    from omnikit.config.sections import BatchConfig, EvalConfig, InferenceConfig, OptimConfig, TrainerConfig
    from omnikit.data.augment import AugmentConfig
    from omnikit.registry import UnknownKeysError

    cases = [
        (OptimConfig, {"lrr": 1.0}, "stages.s.optim", "'lrr' (did you mean 'lr'?)"),
        (TrainerConfig, {"max_step": 1}, "stages.s.trainer", "'max_step' (did you mean 'max_steps'?)"),
        (BatchConfig, {"num_worker": 1}, "stages.s.batch", "'num_worker' (did you mean 'num_workers'?)"),
        (BatchConfig, {"augment": {"sped": [1.0]}}, "stages.s.batch", "'sped' (did you mean 'speed'?)"),
        (AugmentConfig, {"zzz": 1}, "stages.s.batch.augment", "'zzz'; known: freq_mask_width"),
        (InferenceConfig, {"top_kk": 1}, "inference", "'top_kk' (did you mean 'top_k'?)"),
        (EvalConfig, {"limt": 1}, "eval", "'limt' (did you mean 'limit'?)"),
    ]
    for cls, values, path, expected in cases:
        with pytest.raises(UnknownKeysError) as err:
            cls.from_mapping(values, path)
        msg = str(err.value)
        where = f"{path}.augment" if cls is BatchConfig and "augment" in values else path
        assert msg.startswith(f"{where}: unknown keys ") and expected in msg, msg
        assert isinstance(err.value, ValueError) and isinstance(err.value, TypeError)  # as each raised before
    assert OptimConfig.from_mapping(None) == OptimConfig() and TrainerConfig.from_mapping({"max_steps": 7}).max_steps == 7
    with pytest.raises(ValueError, match="stages.s.optim.decay must be constant, cosine or inverse_sqrt"):
        OptimConfig.from_mapping({"decay": "linear"}, "stages.s.optim")


def test_component_args_use_the_same_parser(fake_plugins):
    from omnikit.registry import UnknownKeysError, get_registry

    with pytest.raises(UnknownKeysError, match=r"encoder 'fake_encoder' args: unknown keys 'layerz' "
                                               r"\(did you mean 'layers'\?\)"):
        get_registry("encoder").make_config("fake_encoder", {"layerz": 2, "vocab": 3})
