"""A recipe's data sources: where each lives and its dataset plugin, prepared (training and evaluation alike)."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from omnikit.registry import get_registry


def data_root(cfg: DictConfig, run_dir: Path, source: str) -> Path:
    """Where a data source lives: ``paths.data/<source>`` when the recipe sets it, else ``run_dir/data/<source>``."""
    base = OmegaConf.select(cfg, "paths.data", default=None)
    return (Path(base) if base else Path(run_dir) / "data") / source


@contextlib.contextmanager
def prepare_lock(root: Path) -> Iterator[None]:
    """One process at a time prepares a data source: the processes of a distributed run that start together
    (torchrun, SLURM) wait for the first one, then find its work done (``prepare`` is idempotent)."""
    lock = Path(root).with_name(f".{Path(root).name}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def open_source(cfg: DictConfig, run_dir: Path, source: str) -> tuple[Any, Path]:
    """Build a data source's dataset plugin and ``prepare`` it (idempotent; one process at a time)."""
    node = cfg.data[source]
    args = OmegaConf.to_container(node.get("args") or {}, resolve=True)
    plugin = get_registry("dataset").build(str(node.name), args)
    root = data_root(cfg, run_dir, source)
    with prepare_lock(root):
        plugin.prepare(root)
    return plugin, root
