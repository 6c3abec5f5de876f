"""Config dataclasses: ``param`` (a field with a doc string, so configs document themselves in ``omnikit show``)
and ``config_from_mapping``, the one parser of a recipe mapping into such a dataclass (unknown keys named, with
near-miss suggestions)."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable
from typing import Any

from omnikit.registry.errors import UnknownKeysError

_MISSING = dataclasses.MISSING


def param(default: Any = _MISSING, doc: str = "", *, factory: Any = _MISSING) -> Any:
    """A documented config field. Leave ``default`` out for a required field (``???`` in recipes)."""
    if factory is not _MISSING:
        return dataclasses.field(default_factory=factory, metadata={"doc": doc})
    return dataclasses.field(default=default, metadata={"doc": doc})


def field_doc(f: dataclasses.Field) -> str:
    return str(f.metadata.get("doc", ""))


def near(word: str, options: Iterable[str]) -> str | None:
    """The closest of ``options`` to a misspelt ``word`` (difflib ratio at least 0.6), or None."""
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return close[0] if close else None


def unknown_keys(cls: type, keys: Iterable[Any]) -> dict[str, str | None]:
    """The keys that are not fields of dataclass ``cls``, each with its near-miss field (or None), in order."""
    names = [f.name for f in dataclasses.fields(cls)]
    return {str(k): near(str(k), names) for k in keys if k not in names}


def config_from_mapping(cls: type, values: Any, section: str) -> Any:
    """Build config dataclass ``cls`` from a mapping (None: all defaults). Unknown keys raise
    :class:`UnknownKeysError` naming ``section`` (a config path such as ``stages.s1.optim``), every unknown key
    with its near miss, and the known keys."""
    data = dict(values or {})
    unknown = unknown_keys(cls, data)
    if unknown:
        raise UnknownKeysError(section, unknown, [f.name for f in dataclasses.fields(cls)])
    return cls(**data)
