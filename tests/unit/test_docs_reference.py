"""The generated reference pages (docs/hooks/reference.py) list every CLI command and option and every recipe
key the code accepts, with the code's defaults; a key list that changes without the hook fails the build."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from pathlib import Path

import pytest
import typer.main
import yaml

from omnikit.cli.app import app
from omnikit.config import validation
from omnikit.registry import field_doc

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def hook():
    spec = importlib.util.spec_from_file_location("omnikit_docs_reference_hook", ROOT / "docs/hooks/reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sections(page: str) -> dict[str, str]:
    """``## heading`` -> its text up to the next ``## ``."""
    parts = re.split(r"^## (.+)$", page, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def _row(section: str, key: str) -> str:
    rows = [ln for ln in section.splitlines() if ln.startswith(f"| `{key}` |")]
    assert len(rows) == 1, f"{key}: {len(rows)} rows"
    return rows[0]


def test_cli_page_has_every_command_argument_and_option(hook):
    root = typer.main.get_command(app)
    sections = _sections(hook.render_cli())
    assert set(root.commands) == {"run", "validate", "config", "ls", "show", "plugins", "cp", "chat", "serve", "eval"}
    for opt in (o for p in root.params for o in p.opts):
        assert f"`{opt}`" in sections["omnikit"], opt
    for name, command in root.commands.items():
        assert f"[`{name}`](#omnikit-{name})" in sections["omnikit"], name
        text = sections.get(f"omnikit {name}")
        assert text is not None, f"no section for `omnikit {name}`"
        assert " ".join(command.help.split()) in text
        for p in command.params:
            if p.param_type_name == "argument":
                row = _row(text, p.name.upper())
            else:
                row = next((ln for ln in text.splitlines()
                            if ln.startswith("| `") and f"`{p.opts[0]}`" in ln.split(" | ")[0]), "")
                assert row, f"omnikit {name}: no row for {p.opts}"
                for opt in [*p.opts, *p.secondary_opts]:
                    assert f"`{opt}`" in row, (name, opt)
            assert " ".join(p.help.split()) in row, (name, p.name)


def test_cli_page_shows_types_defaults_and_ranges(hook):
    sections = _sections(hook.render_cli())
    serve = sections["omnikit serve"]
    assert "| `--port` | int, 0≤x≤65535 | `8000` |" in serve
    assert "Environment variable: `OMNIKIT_SERVE_TOKEN`." in _row(serve, "--token")
    assert "| `--check` / `--no-check` | flag | `--check` |" in sections["omnikit config"]
    assert "omnikit run [OPTIONS] RECIPE [OVERRIDES]..." in sections["omnikit run"]
    assert "| `--input`, `-i` | path | — |" in sections["omnikit chat"]


def test_schema_page_has_every_field_of_every_section_dataclass(hook):
    from omnikit.config.sections import STAGE_OPTIONS, EvalConfig, InferenceConfig

    classes = hook.section_classes()
    assert {cls for cls in classes.values()} >= {*STAGE_OPTIONS.values(), InferenceConfig, EvalConfig}
    sections = _sections(hook.render_recipe_schema())
    for path, cls in classes.items():
        text = sections.get(f"`{path}`")
        assert text is not None, f"no section for {path}"
        assert f"{cls.__module__}.{cls.__name__}" in text
        for f in dataclasses.fields(cls):
            row = _row(text, f.name)
            assert field_doc(f).replace("|", "\\|") in row, (path, f.name)
            if f.default is not dataclasses.MISSING:
                assert f"`{hook.yaml_value(f.default)}`" in row, (path, f.name)
            elif f.default_factory is not dataclasses.MISSING:
                assert f"`{hook.yaml_value(f.default_factory())}`" in row, (path, f.name)
    trainer = sections["`stages.<stage>.trainer`"]
    assert "`'32-true'`" not in trainer and "| `precision` | `str` | `32-true` |" in trainer  # YAML, not repr
    assert "| `gradient_clip_val` | `float | None` | `null` |" in trainer  # no escape inside a code span


def test_schema_page_has_every_top_level_slot_stage_and_data_key(hook):
    sections = _sections(hook.render_recipe_schema())
    for key in (*validation.TOP_LEVEL_KEYS, "include"):
        _row(sections["Top level"], key)
    for slot in validation.SLOT_KINDS:
        assert f"| `model.{slot}` |" in sections["model"], slot
    for key in validation.SLOT_KEYS:
        _row(sections["model"], key)
    for key in validation.DATA_KEYS:
        _row(sections["data"], key)
    for key in (*validation.STAGE_KEYS, *validation.STAGE_DATA_KEYS):
        _row(sections["stages"], key)


@pytest.mark.parametrize("name", ["TOP_LEVEL_KEYS", "SLOT_KEYS", "STAGE_KEYS", "STAGE_DATA_KEYS", "DATA_KEYS"])
def test_a_key_the_hook_does_not_document_fails_the_build(hook, monkeypatch, name):
    monkeypatch.setattr(validation, name, (*getattr(validation, name), "brand_new_key"))
    with pytest.raises(KeyError, match="brand_new_key"):
        hook.render_recipe_schema()


def test_mkdocs_adds_both_pages_and_the_nav_names_them(hook):
    from mkdocs.config import load_config
    from mkdocs.structure.files import Files

    cfg_text = (ROOT / "mkdocs.yml").read_text()
    conf = yaml.safe_load(cfg_text)
    assert "docs/hooks/reference.py" in conf["hooks"]
    reference = next(item["Reference"] for item in conf["nav"] if isinstance(item, dict) and "Reference" in item)
    assert {v for item in reference for v in item.values()} >= set(hook.PAGES)
    config = load_config(str(ROOT / "mkdocs.yml"))
    files = config.plugins.on_files(Files([]), config=config)  # as a build runs the hooks
    assert files.get_file_from_path("reference/cli.md").content_string.startswith("# Command line")
    assert files.get_file_from_path("reference/recipe-schema.md").content_string.startswith("# Recipe schema")
    for uri in hook.PAGES:
        assert not (ROOT / "docs" / uri).exists(), f"docs/{uri} is generated; a file there would be stale"
