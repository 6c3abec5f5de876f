"""One registry per plugin kind, fed by entry points.

Listing reads entry-point metadata only; a component's module is imported the first time it is asked for.
Built-in components are declared in omnikit's own pyproject exactly like a third-party plugin's.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from omnikit.registry.errors import (
    DuplicatePluginError,
    PluginContractError,
    PluginImportError,
    UnknownComponentError,
)
from omnikit.registry.fields import config_from_mapping, near

KINDS: dict[str, str] = {
    "encoder": "omnikit.encoders",
    "adapter": "omnikit.adapters",
    "llm": "omnikit.llms",
    "speech_decoder": "omnikit.speech_decoders",
    "codec": "omnikit.codecs",
    "duplex_policy": "omnikit.duplex_policies",
    "vad": "omnikit.vads",
    "objective": "omnikit.objectives",
    "dataset": "omnikit.datasets",
}
"""Plugin kind -> entry-point group."""

AUTOLOAD_ENV = "OMNIKIT_DISABLE_PLUGIN_AUTOLOAD"
OWN_DISTRIBUTION = "omnikit"


@dataclass
class PluginEntry:
    """One registered component, known from metadata before anything is imported."""

    kind: str
    name: str
    value: str  # "module:attr"
    distribution: str
    version: str
    _loaded: Any = field(default=None, repr=False)
    _error: BaseException | None = field(default=None, repr=False)

    def load(self) -> type:
        """Import the component class (cached); raise PluginImportError naming the distribution."""
        if self._loaded is None and self._error is None:
            module_name, _, attr = self.value.partition(":")
            try:
                obj: Any = importlib.import_module(module_name)
                for part in attr.split(".") if attr else []:
                    obj = getattr(obj, part)
                self._loaded = obj
            except Exception as exc:  # any import-time failure of third-party code
                self._error = exc
        if self._error is not None:
            raise PluginImportError(
                f"{self.kind} '{self.name}' from distribution '{self.distribution} {self.version}' "
                f"failed to import ({self.value}): {type(self._error).__name__}: {self._error}"
            ) from self._error
        return self._loaded

    @property
    def failed(self) -> bool:
        try:
            self.load()
        except PluginImportError:
            return True
        return False

    def summary(self) -> str:
        """First docstring line of the component (imports it)."""
        doc = (self.load().__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


EntryPointSource = Callable[[str], Iterable[metadata.EntryPoint]]


def _installed_entry_points(group: str) -> Iterable[metadata.EntryPoint]:
    return metadata.entry_points(group=group)


_source: EntryPointSource = _installed_entry_points
"""Where registries read entry points; tests swap it for fake distributions."""


def autoload_disabled() -> bool:
    return os.environ.get(AUTOLOAD_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


class Registry:
    """The components of one kind."""

    def __init__(self, kind: str, source: EntryPointSource | None = None):
        if kind not in KINDS:
            raise ValueError(f"unknown plugin kind '{kind}'; kinds: {', '.join(KINDS)}")
        self.kind = kind
        self.group = KINDS[kind]
        self._entries: dict[str, PluginEntry] = {}
        self.skipped: list[PluginEntry] = []  # third-party entries hidden by OMNIKIT_DISABLE_PLUGIN_AUTOLOAD
        for ep in (source or _source)(self.group):
            dist = ep.dist
            entry = PluginEntry(
                kind=kind,
                name=ep.name,
                value=ep.value,
                distribution=dist.metadata["Name"] if dist is not None else "<unknown>",
                version=dist.version if dist is not None else "",
            )
            if autoload_disabled() and entry.distribution != OWN_DISTRIBUTION:
                self.skipped.append(entry)
                continue
            self._add(entry)

    def _add(self, entry: PluginEntry) -> None:
        old = self._entries.get(entry.name)
        if old is None or (old.distribution, old.value) == (entry.distribution, entry.value):
            self._entries[entry.name] = entry
            return
        raise DuplicatePluginError(
            f"{self.kind} '{entry.name}' is provided by two distributions: "
            f"'{old.distribution} {old.version}' ({old.value}) and "
            f"'{entry.distribution} {entry.version}' ({entry.value}); uninstall one of them"
        )

    def names(self) -> list[str]:
        """Registered names, from metadata only (nothing is imported)."""
        return sorted(self._entries)

    def entries(self) -> list[PluginEntry]:
        return [self._entries[n] for n in self.names()]

    def suggest(self, name: str) -> str | None:
        return near(name, self.names())

    def entry(self, name: str) -> PluginEntry:
        if name not in self._entries:
            raise UnknownComponentError(self.kind, name, self.names(), self.suggest(name))
        return self._entries[name]

    def get(self, name: str) -> type:
        """The component class (imports its module)."""
        cls = self.entry(name).load()
        if not dataclasses.is_dataclass(getattr(cls, "config_class", None)):
            raise PluginImportError(
                f"{self.kind} '{name}' ({self.entry(name).value}) has no dataclass `config_class`"
            )
        return cls

    def make_config(self, name: str, args: Mapping[str, Any] | None = None) -> Any:
        """``name``'s config dataclass from recipe ``args`` (unknown keys raise ``UnknownKeysError``)."""
        return config_from_mapping(self.get(name).config_class, args, f"{self.kind} '{name}' args")

    def build(self, name: str, args: Mapping[str, Any] | None = None, **context: Any) -> Any:
        """Instantiate ``name`` as ``cls(config, **context)`` and check it against its kind's Protocol."""
        cls = self.get(name)
        component = cls(self.make_config(name, args), **context)
        self.check_contract(name, component)
        return component

    def check_contract(self, name: str, component: Any) -> None:
        """Raise ``PluginContractError`` when ``component`` lacks a member of this kind's Protocol (every
        declared attribute present, every declared method callable; see ``omnikit.interfaces``)."""
        from omnikit.interfaces import KIND_PROTOCOLS, contract_gaps  # imports torch: only when building

        gaps = contract_gaps(component, self.kind)
        if gaps:
            entry, protocol = self.entry(name), KIND_PROTOCOLS[self.kind].__name__
            raise PluginContractError(
                f"{self.kind} '{name}' from distribution '{entry.distribution} {entry.version}' ({entry.value}) "
                f"does not meet the {self.kind} contract (omnikit.interfaces.{protocol}): missing {', '.join(gaps)}"
            )


_registries: dict[str, Registry] = {}


def get_registry(kind: str) -> Registry:
    """The (cached) registry of installed components of ``kind``."""
    if kind not in _registries:
        _registries[kind] = Registry(kind)
    return _registries[kind]


def reset_registries() -> None:
    """Forget cached registries (after installing a plugin, or in tests)."""
    _registries.clear()


def load_failures() -> list[PluginEntry]:
    """Entries whose module fails to import, with a warning for each (used by listings)."""
    failed = []
    for kind in KINDS:
        for entry in get_registry(kind).entries():
            if entry.failed:
                warnings.warn(f"plugin {kind} '{entry.name}' from '{entry.distribution}' failed to import: "
                              f"{entry._error}", stacklevel=2)
                failed.append(entry)
    return failed
