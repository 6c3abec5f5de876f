"""mkdocs hook: write docs/catalog.md from the registries, so the catalog always matches the code."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

HEADER = """# Component catalog

Generated from the registries at docs build time (`docs/hooks/catalog.py`): every installed component, its
summary, provider and config fields. `omnikit ls` and `omnikit show KIND NAME` print the same from the command line.
"""


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return f"`{f.default!r}`"
    if f.default_factory is not dataclasses.MISSING:
        return f"`{f.default_factory()!r}`"
    return "required"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render() -> str:
    from omnikit.registry import KINDS, PluginImportError, field_doc, get_registry

    out = [HEADER]
    for kind, group in KINDS.items():
        out.append(f"\n## {kind}\n\nEntry-point group `{group}`.\n")
        for entry in get_registry(kind).entries():
            out.append(f"\n### `{entry.name}`\n")
            try:
                cls = entry.load()
            except PluginImportError as exc:
                out.append(f"Provided by `{entry.distribution} {entry.version}`; **failed to import**: {exc.__cause__}\n")
                continue
            doc = (cls.__doc__ or "").strip()
            out.append(f"{doc.splitlines()[0] if doc else ''}\n\nProvided by `{entry.distribution} {entry.version}` "
                       f"(`{entry.value}`).\n")
            cfg = getattr(cls, "config_class", None)
            if cfg is None or not dataclasses.is_dataclass(cfg):
                continue
            hints = typing.get_type_hints(cfg)
            out.append("\n| field | type | default | doc |\n|---|---|---|---|")
            for f in dataclasses.fields(cfg):
                hint = hints.get(f.name)
                tname = getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
                out.append(f"| `{f.name}` | `{_cell(tname)}` | {_cell(_default(f))} | {_cell(field_doc(f))} |")
            out.append("")
    return "\n".join(out) + "\n"


def on_pre_build(config, **kwargs) -> None:
    path = Path(config["docs_dir"]) / "catalog.md"
    text = render()
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
