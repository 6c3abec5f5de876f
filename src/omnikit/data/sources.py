"""A recipe's data sources: where each lives and its dataset plugin, prepared (training and evaluation alike)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from omnikit.registry import get_registry


def data_root(cfg: DictConfig, run_dir: Path, source: str) -> Path:
    """Where a data source lives: ``paths.data/<source>`` when the recipe sets it, else ``run_dir/data/<source>``."""
    base = OmegaConf.select(cfg, "paths.data", default=None)
    return (Path(base) if base else Path(run_dir) / "data") / source


def open_source(cfg: DictConfig, run_dir: Path, source: str) -> tuple[Any, Path]:
    """Build a data source's dataset plugin and ``prepare`` it (idempotent)."""
    node = cfg.data[source]
    args = OmegaConf.to_container(node.get("args") or {}, resolve=True)
    plugin = get_registry("dataset").build(str(node.name), args)
    root = data_root(cfg, run_dir, source)
    plugin.prepare(root)
    return plugin, root
