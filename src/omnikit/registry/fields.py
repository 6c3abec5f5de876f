"""``param``: a dataclass field with a doc string, so configs document themselves in ``omnikit show``."""

from __future__ import annotations

import dataclasses
from typing import Any

_MISSING = dataclasses.MISSING


def param(default: Any = _MISSING, doc: str = "", *, factory: Any = _MISSING) -> Any:
    """A documented config field. Leave ``default`` out for a required field (``???`` in recipes)."""
    if factory is not _MISSING:
        return dataclasses.field(default_factory=factory, metadata={"doc": doc})
    return dataclasses.field(default=default, metadata={"doc": doc})


def field_doc(f: dataclasses.Field) -> str:
    return str(f.metadata.get("doc", ""))


def config_from_mapping(cls: type, values: Any, section: str) -> Any:
    """Build config dataclass ``cls`` from a mapping, naming unknown keys (for recipe sections read directly)."""
    names = {f.name for f in dataclasses.fields(cls)}
    data = dict(values or {})
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{section}: unknown keys {unknown}; known: {sorted(names)}")
    return cls(**data)
