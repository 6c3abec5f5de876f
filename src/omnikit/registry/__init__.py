"""Plugin registries, one per kind, fed by entry points (see ``catalog``)."""

from omnikit.registry.catalog import (
    AUTOLOAD_ENV,
    KINDS,
    PluginEntry,
    Registry,
    get_registry,
    load_failures,
    reset_registries,
)
from omnikit.registry.errors import (
    DuplicatePluginError,
    PluginImportError,
    RegistryError,
    UnknownComponentError,
)
from omnikit.registry.fields import field_doc, param

__all__ = [
    "AUTOLOAD_ENV",
    "KINDS",
    "DuplicatePluginError",
    "PluginEntry",
    "PluginImportError",
    "Registry",
    "RegistryError",
    "UnknownComponentError",
    "field_doc",
    "get_registry",
    "load_failures",
    "param",
    "reset_registries",
]
