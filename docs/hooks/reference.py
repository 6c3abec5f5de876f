"""mkdocs hook: generate the reference pages from the code at docs build time, so they cannot drift from it.

* ``reference/cli.md``: every ``omnikit`` command with its arguments and options (types, defaults, help), read
  from the typer app's command tree (``omnikit.cli.app``).
* ``reference/recipe-schema.md``: the recipe's top-level keys, model slots, data sources, stage keys, and every
  field of the section dataclasses (``omnikit.config.sections`` and the two nested sub-sections) with its type,
  default and doc string (``param(...)``).

The pages are added to the build as generated files (nothing is written into ``docs/``).
``tests/unit/test_docs_reference.py`` calls ``render_cli`` and ``render_recipe_schema`` directly.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from typing import Any

CLI_HEADER = """# Command line

Generated from the `omnikit` command tree at docs build time (`docs/hooks/reference.py`), so it lists every
command and option the installed version has. `omnikit COMMAND --help` prints the same from the command line.

Exit codes: 0 on success, 2 for a recipe or usage problem (every problem listed), 1 for a failure at run time
(one line; `--verbose` shows the traceback). See [Errors](../concepts/errors.md).
"""

SCHEMA_HEADER = """# Recipe schema

Generated at docs build time (`docs/hooks/reference.py`) from the key lists that `omnikit validate` checks
(`omnikit.config.validation`) and from the dataclasses the sections are read into
(`omnikit.config.sections`), so every key below is one the code accepts, with its real default.
[Recipes](../concepts/recipes.md) explains includes, overrides and merging; the components' own `args` are in
the [component catalog](../catalog.md).

A key path such as `stages.<stage>.trainer.precision` is also the override that sets it:
`omnikit run RECIPE stages.input_1_ctc.trainer.precision=bf16-mixed`.
"""

TOP_LEVEL_DOCS: dict[str, tuple[str, str, str]] = {
    # key: (type, default, doc); the keys must equal validation.TOP_LEVEL_KEYS (checked by render_recipe_schema)
    "omnikit": ("int", "`{version}`", "Schema version of the recipe format; only {version} is supported."),
    "name": ("str", "—", "Recipe name; the run directory is `runs/<name>` when `paths.out` is not set."),
    "description": ("str", "—", "Free text; not read by omnikit."),
    "seed": ("int", "`0`", "Random seed; stage *i* of the schedule trains with `seed + i`."),
    "profile": ("any", "—", "Free-form label; accepted, not read by omnikit."),
    "paths": ("mapping", "`{}`", "Free-form paths for `${paths...}` interpolations. omnikit itself reads "
              "`paths.out` (the run directory of `omnikit run`, relative to the current folder) and `paths.data` "
              "(where data sources are prepared; default `RUN_DIR/data`)."),
    "model": ("mapping", "`{}`", "One component per slot; see [model](#model)."),
    "data": ("mapping", "`{}`", "Named data sources; see [data](#data)."),
    "schedule": ("list[str]", "`[]`", "Stage names, in the order `omnikit run` runs them."),
    "stages": ("mapping", "`{}`", "Stage name → stage; see [stages](#stages). A mapping, so overrides merge per "
               "stage."),
    "inference": ("mapping", "defaults", "How a session samples text and speech; see [inference](#inference)."),
    "eval": ("mapping", "—", "Evaluation options; see [eval](#eval). When present, `omnikit run` of the whole "
             "schedule ends with the evaluation report."),
}
LOADER_KEYS: dict[str, tuple[str, str, str]] = {
    "include": ("str \\| list[str]", "`[]`", "Base recipes merged first, in order (paths relative to this file, "
                "or packaged recipe names); read by the loader, gone from the merged recipe."),
}
SLOT_DOCS: dict[str, tuple[str, str, str]] = {
    "name": ("str", "required", "A registered component of the slot's kind (`omnikit ls KIND`)."),
    "args": ("mapping", "`{}`", "Fields of that component's config class ([catalog](../catalog.md), "
             "`omnikit show KIND NAME`); a later file or override that changes `name` drops the earlier `args`."),
    "init": ("str", "—", "Weights loaded into the slot before every stage: `stage:<name>` or a `.safetensors` "
             "file."),
    "trainable": ("bool", "`true`", "`false` freezes the slot: no stage may name it whole (the frozen LLM)."),
}
DATA_DOCS: dict[str, tuple[str, str, str]] = {
    "name": ("str", "required", "A registered `dataset` component (`omnikit ls dataset`)."),
    "args": ("mapping", "`{}`", "Fields of that dataset's config class ([catalog](../catalog.md#dataset))."),
}
STAGE_DOCS: dict[str, tuple[str, str, str]] = {
    "description": ("str", "—", "Free text; not read by omnikit."),
    "trainable": ("list[str]", "`[]`", "Slot names (the whole slot) or regular expressions matched against full "
                  "parameter names; every entry must match something."),
    "objectives": ("mapping", "required", "Objective name (`omnikit ls objective`) → a loss weight, or "
                   "`{weight, args}`; the stage's loss is the weighted sum. At least one."),
    "data": ("mapping", "required", "Which data the stage trains and validates on; see below."),
    "init": ("mapping", "`{}`", "Slot → `stage:<earlier stage>` or a `.safetensors` file, loaded before the stage "
             "trains (after the slot's own `init`)."),
    "optim": ("mapping", "defaults", "Optimizer; see [optim](#stagesstageoptim)."),
    "trainer": ("mapping", "defaults", "Lightning trainer options; see [trainer](#stagesstagetrainer)."),
    "batch": ("mapping", "defaults", "Batching and data loading; see [batch](#stagesstagebatch)."),
}
STAGE_DATA_DOCS: dict[str, tuple[str, str, str]] = {
    "source": ("str", "required", "A key under `data`."),
    "train": ("str \\| list[str]", "required", "The source's training part(s); a list concatenates parts."),
    "val": ("str \\| list[str]", "—", "The source's validation part(s)."),
}


def _cell(text: Any) -> str:
    """Text for a table cell: pipes escaped outside code spans (inside them an escape would show literally)."""
    parts = re.split(r"(`[^`]+`)", str(text).replace("\n", " "))
    return "".join(p if p.startswith("`") else p.replace("|", "\\|") for p in parts)


def _code(value: Any) -> str:
    return "`" + str(value).replace("`", "'") + "`"


def _key_table(docs: dict[str, tuple[str, str, str]], keys: typing.Iterable[str], where: str,
               **fmt: Any) -> list[str]:
    """A key | type | default | doc table of ``keys``, which must be exactly the documented ones."""
    keys = list(keys)
    undocumented, stale = set(keys) - set(docs), set(docs) - set(keys)
    if undocumented or stale:
        raise KeyError(f"docs/hooks/reference.py is out of date for {where}: undocumented {sorted(undocumented)}, "
                       f"no longer accepted {sorted(stale)}")
    out = ["| key | type | default | doc |", "|---|---|---|---|"]
    for k in keys:
        tname, default, doc = docs[k]
        for name, value in fmt.items():
            default, doc = (t.replace("{" + name + "}", str(value)) for t in (default, doc))
        out.append(f"| `{k}` | {tname} | {default} | {_cell(doc)} |")
    return out


def type_name(hint: Any) -> str:
    """A readable type: ``float | None``, ``list[float]``, ``one of 'fail', 'skip'``."""
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(hint))
    if hint is Any:
        return "any"
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__name__
    return str(hint).replace("typing.", "").replace("Any", "any")


def yaml_value(value: Any) -> str:
    """A default as it is written in a recipe (``null``, ``false``, ``[0.9, 0.99]``)."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return text.removesuffix("...").strip()


def default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return _code(yaml_value(f.default))
    if f.default_factory is not dataclasses.MISSING:
        return _code(yaml_value(f.default_factory()))
    return "required (`???`)"


def field_table(cls: type) -> list[str]:
    """One row per dataclass field: name, type, default, doc."""
    from omnikit.registry import field_doc

    hints = typing.get_type_hints(cls)
    out = ["| key | type | default | doc |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        out.append(f"| `{f.name}` | {_cell(_code(type_name(hints.get(f.name, Any))))} | {_cell(default_text(f))} | "
                   f"{_cell(field_doc(f))} |")
    return out


def section_classes() -> dict[str, type]:
    """Config path -> the dataclass that section is read into (what ``omnikit validate`` checks it against)."""
    from omnikit.components.vads.vad_tracker import SpeechTrackerConfig
    from omnikit.config.sections import STAGE_OPTIONS, EvalConfig, InferenceConfig
    from omnikit.data.augment import AugmentConfig

    out: dict[str, type] = {f"stages.<stage>.{key}": cls for key, cls in STAGE_OPTIONS.items()}
    out["stages.<stage>.batch.augment"] = AugmentConfig
    out["inference"] = InferenceConfig
    out["inference.speech_tracker"] = SpeechTrackerConfig
    out["eval"] = EvalConfig
    return out


def _class_doc(cls: type) -> str:
    doc = (cls.__doc__ or "").strip()
    if not doc or doc.startswith(f"{cls.__name__}("):  # the dataclass's generated signature
        return ""
    return " ".join(doc.split())


def render_recipe_schema() -> str:
    from omnikit.config.validation import (
        DATA_KEYS,
        SCHEMA_VERSION,
        SLOT_KEYS,
        SLOT_KINDS,
        STAGE_DATA_KEYS,
        STAGE_KEYS,
        TOP_LEVEL_KEYS,
    )
    from omnikit.registry import get_registry

    out = [SCHEMA_HEADER, "## Top level\n"]
    out += _key_table(TOP_LEVEL_DOCS | LOADER_KEYS, [*TOP_LEVEL_KEYS, *LOADER_KEYS], "the top-level keys",
                      version=SCHEMA_VERSION)
    out += ["\nAny other top-level key is reported by `omnikit validate`, with a suggestion for a near miss.\n",
            "## model\n", "One entry per slot; each slot holds one component of the slot's kind.\n",
            "| slot | kind | installed components |", "|---|---|---|"]
    for slot, kind in SLOT_KINDS.items():
        names = ", ".join(f"`{n}`" for n in get_registry(kind).names()) or "none"
        out.append(f"| `model.{slot}` | [`{kind}`](../catalog.md#{kind}) | {names} |")
    out += ["\nEach slot, `model.<slot>`:\n"]
    out += _key_table(SLOT_DOCS, SLOT_KEYS, "model.<slot>")
    out += ["\n## data\n", "`data.<source>`: a named data source that stages refer to by name.\n"]
    out += _key_table(DATA_DOCS, DATA_KEYS, "data.<source>")
    out += ["\n## stages\n", "`stages.<stage>`: one training stage; `schedule` says which stages run, in order.\n"]
    out += _key_table(STAGE_DOCS, STAGE_KEYS, "stages.<stage>")
    out += ["\n`stages.<stage>.data`:\n"]
    out += _key_table(STAGE_DATA_DOCS, STAGE_DATA_KEYS, "stages.<stage>.data")
    for path, cls in section_classes().items():
        out += [f"\n## `{path}`\n", f"{_class_doc(cls)} Read into `{cls.__module__}.{cls.__name__}`.\n".lstrip()]
        out += field_table(cls)
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------- CLI
def _root_command() -> Any:
    import typer.main

    from omnikit.cli.app import app

    return typer.main.get_command(app)


def _context(command: Any, name: str, parent: Any = None) -> Any:
    import importlib

    for module in ("typer._click", "click"):  # typer >= 0.29 vendors click; older typer uses click itself
        try:
            ctx_cls = importlib.import_module(module).Context
        except ImportError:
            continue
        try:
            return ctx_cls(command, info_name=name, parent=parent)
        except Exception:  # noqa: BLE001 - a Context of the other click: try the next
            continue
    raise RuntimeError("no click Context class fits the typer command tree")


def commands() -> dict[str, Any]:
    """Command name -> command, in the order the CLI defines them."""
    return dict(_root_command().commands)


def _param_type(p: Any, ctx: Any) -> str:
    if getattr(p, "is_flag", False):
        return "flag"
    if hasattr(p, "display_type"):  # typer >= 0.29
        label = p.display_type(ctx).strip("<>")
    else:
        label = getattr(p.type, "name", str(p.type))
    if label.startswith("list[") and (getattr(p, "multiple", False) or p.nargs == -1):
        label = label[5:-1].lower()  # one value per occurrence: say "Repeatable" / "Any number" instead
    lo, hi = getattr(p, "min", None), getattr(p, "max", None)
    if lo is None and hi is None and hasattr(p, "type"):
        lo, hi = getattr(p.type, "min", None), getattr(p.type, "max", None)
    if lo is not None or hi is not None:
        label = label.replace(" range", "")
        label += f", {lo if lo is not None else ''}{'≤' if lo is not None else ''}x{'≤' if hi is not None else ''}" \
                 f"{hi if hi is not None else ''}"
    return label


def _param_default(p: Any) -> str:
    if getattr(p, "is_flag", False) and p.secondary_opts:
        return _code(p.opts[0] if p.default else p.secondary_opts[0])
    if getattr(p, "is_flag", False):
        return "on" if p.default else "off"
    if p.required:
        return "required"
    if p.default is None or p.default == ():
        return "—"
    return _code(p.default)


def _param_help(p: Any) -> str:
    text = " ".join((getattr(p, "help", None) or "").split())
    if getattr(p, "multiple", False):
        text += " Repeatable."
    if p.nargs == -1:
        text += " Any number."
    if getattr(p, "envvar", None):
        text += f" Environment variable: `{p.envvar}`."
    return text.strip()


def _usage(name: str, command: Any) -> str:
    pieces = [f"omnikit {name}", "[OPTIONS]"] if any(p.param_type_name == "option" for p in command.params) \
        else [f"omnikit {name}"]
    for p in command.params:
        if p.param_type_name != "argument":
            continue
        metavar = p.name.upper()
        if p.nargs == -1:
            metavar = f"[{metavar}]..."
        elif not p.required:
            metavar = f"[{metavar}]"
        pieces.append(metavar)
    return " ".join(pieces)


def _params_tables(command: Any, ctx: Any) -> list[str]:
    out: list[str] = []
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    options = [p for p in command.params if p.param_type_name == "option" and not getattr(p, "hidden", False)]
    if arguments:
        out += ["| argument | type | default | help |", "|---|---|---|---|"]
        for p in arguments:
            out.append(f"| `{p.name.upper()}` | {_cell(_param_type(p, ctx))} | {_cell(_param_default(p))} | "
                       f"{_cell(_param_help(p))} |")
        out.append("")
    if options:
        out += ["| option | type | default | help |", "|---|---|---|---|"]
        for p in options:
            names = ", ".join(f"`{o}`" for o in sorted(p.opts, key=len, reverse=True))
            if p.secondary_opts:
                names += " / " + ", ".join(f"`{o}`" for o in p.secondary_opts)
            out.append(f"| {names} | {_cell(_param_type(p, ctx))} | {_cell(_param_default(p))} | "
                       f"{_cell(_param_help(p))} |")
        out.append("")
    return out


def render_cli() -> str:
    root = _root_command()
    ctx = _context(root, "omnikit")
    out = [CLI_HEADER, "## omnikit\n", f"{' '.join((root.help or '').split())}\n",
           "```text\nomnikit [OPTIONS] COMMAND [ARGS]...\n```\n"]
    out += _params_tables(root, ctx)
    out += ["| command | what |", "|---|---|"]
    for name, command in root.commands.items():
        first = (command.help or "").strip().splitlines()[0] if command.help else ""
        out.append(f"| [`{name}`](#omnikit-{name}) | {_cell(first)} |")
    out.append("")
    for name, command in root.commands.items():
        sub = _context(command, name, ctx)
        out += [f"## omnikit {name}\n", f"{' '.join((command.help or '').split())}\n",
                f"```text\n{_usage(name, command)}\n```\n"]
        out += _params_tables(command, sub)
    return "\n".join(out).rstrip() + "\n"


PAGES = {"reference/cli.md": render_cli, "reference/recipe-schema.md": render_recipe_schema}
"""Generated page (relative to docs/) -> the function that renders it."""


def on_files(files, config, **kwargs):
    from mkdocs.structure.files import File

    for uri, render in PAGES.items():
        old = files.get_file_from_path(uri)
        if old is not None:  # a stale hand-written copy must not shadow the generated page
            files.remove(old)
        files.append(File.generated(config, uri, content=render()))
    return files
