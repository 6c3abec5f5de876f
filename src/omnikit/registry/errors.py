"""Errors raised by the registries."""

from __future__ import annotations


class RegistryError(Exception):
    """Base class for plugin lookup problems."""


class UnknownComponentError(RegistryError, KeyError):
    def __init__(self, kind: str, name: str, known: list[str], suggestion: str | None = None):
        self.kind, self.name, self.known, self.suggestion = kind, name, known, suggestion
        hint = f"; did you mean '{suggestion}'?" if suggestion else f" (known: {', '.join(known) or 'none'})"
        super().__init__(f"unknown {kind} '{name}'{hint}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class DuplicatePluginError(RegistryError):
    """Two distributions provide the same (kind, name)."""


class PluginImportError(RegistryError):
    """A plugin's module failed to import (raised only when a recipe uses it)."""


class PluginContractError(RegistryError, TypeError):
    """A built component lacks members of its kind's Protocol (``omnikit.interfaces``); the message names the
    component, its kind, the distribution that provides it and the missing members."""


class UnknownKeysError(TypeError, ValueError):
    """Keys of a mapping that its config dataclass lacks (``config_from_mapping``). Both a ``TypeError`` (an
    unexpected keyword argument) and a ``ValueError`` (a bad recipe value), as its callers raised before."""

    def __init__(self, section: str, unknown: dict[str, str | None], known: list[str]):
        self.section, self.unknown, self.known = section, unknown, sorted(known)
        keys = ", ".join(f"'{k}' (did you mean '{m}'?)" if m else f"'{k}'" for k, m in unknown.items())
        super().__init__(f"{section}: unknown keys {keys}; known: {', '.join(self.known)}")
