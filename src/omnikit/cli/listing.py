"""Text for ``omnikit ls``, ``show`` and ``plugins``: the registry as people read it."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from omnikit.registry import KINDS, PluginImportError, field_doc, get_registry
from omnikit.registry.catalog import autoload_disabled


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return repr(f.default)
    if f.default_factory is not dataclasses.MISSING:
        return repr(f.default_factory())
    return "??? (required)"


def _type(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def list_rows(kind: str | None = None) -> list[tuple[str, str, str, str]]:
    """(kind, name, summary, provider) for every component; a broken one says so in its summary."""
    rows = []
    for k in [kind] if kind else list(KINDS):
        for entry in get_registry(k).entries():
            try:
                summary = entry.summary()
            except PluginImportError as exc:
                summary = f"[failed to import: {exc.__cause__}]"
            rows.append((k, entry.name, summary, f"{entry.distribution} {entry.version}"))
    return rows


def format_table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def show_text(kind: str, name: str) -> str:
    """A component's summary, provider, docs and every config field with type, default and doc."""
    registry = get_registry(kind)
    entry = registry.entry(name)
    cls = registry.get(name)
    doc = (cls.__doc__ or "").strip()
    hints = typing.get_type_hints(cls.config_class)
    out = [f"{kind} '{name}'  ({entry.distribution} {entry.version}, {entry.value})", ""]
    if doc:
        out += [doc, ""]
    out.append(f"config: {cls.config_class.__name__}")
    rows = [(f.name, _type(hints.get(f.name)), _default(f), field_doc(f)) for f in dataclasses.fields(cls.config_class)]
    out.append(format_table(rows, ("field", "type", "default", "doc")) if rows else "(no fields)")
    return "\n".join(out)


def plugin_rows() -> list[tuple[str, str, str, str]]:
    """(distribution, version, status, components) per distribution that provides components."""
    dists: dict[tuple[str, str], dict[str, list[str]]] = {}
    for kind in KINDS:
        reg = get_registry(kind)
        for entry in reg.entries():
            d = dists.setdefault((entry.distribution, entry.version), {"ok": [], "failed": [], "disabled": []})
            d["failed" if entry.failed else "ok"].append(f"{kind}:{entry.name}")
        for entry in reg.skipped:
            dists.setdefault((entry.distribution, entry.version), {"ok": [], "failed": [], "disabled": []})[
                "disabled"].append(f"{kind}:{entry.name}")
    rows = []
    for (dist, version), st in sorted(dists.items()):
        if st["disabled"]:
            status = "disabled (OMNIKIT_DISABLE_PLUGIN_AUTOLOAD)"
        elif st["failed"]:
            status = f"failed: {', '.join(st['failed'])}"
        else:
            status = "loaded"
        comps = st["ok"] + st["failed"] + st["disabled"]
        rows.append((dist, version, status, str(len(comps))))
    return rows


def autoload_note() -> str:
    return "third-party plugins disabled by OMNIKIT_DISABLE_PLUGIN_AUTOLOAD" if autoload_disabled() else ""
