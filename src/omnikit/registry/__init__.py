"""Plugin registries, one per kind, fed by entry points."""

from omnikit.registry.fields import param

__all__ = ["param"]
