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
    PluginContractError,
    PluginImportError,
    RegistryError,
    UnknownComponentError,
    UnknownKeysError,
)
from omnikit.registry.fields import config_from_mapping, field_doc, near, param

__all__ = [
    "AUTOLOAD_ENV",
    "KINDS",
    "DuplicatePluginError",
    "PluginContractError",
    "PluginEntry",
    "PluginImportError",
    "Registry",
    "RegistryError",
    "UnknownComponentError",
    "UnknownKeysError",
    "config_from_mapping",
    "field_doc",
    "get_registry",
    "load_failures",
    "near",
    "param",
    "reset_registries",
]
