"""An example omnikit plugin package (see README.md)."""

__version__ = "0.1.0"
