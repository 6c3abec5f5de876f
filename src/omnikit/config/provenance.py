"""What a run directory records: the resolved recipe and where every component came from."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

import omnikit
from omnikit.config.validation import SLOT_KINDS
from omnikit.registry import get_registry


def git_commit(cwd: Path | None = None) -> str | None:
    """HEAD of the repository omnikit runs from (with ``-dirty`` when it has local changes), if any."""
    where = cwd or Path(omnikit.__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "")


def _component(kind: str, name: str) -> dict[str, Any]:
    entry = get_registry(kind).entry(name)
    return {"kind": kind, "name": name, "distribution": entry.distribution, "version": entry.version,
            "entry_point": entry.value}


def provenance(cfg: DictConfig) -> dict[str, Any]:
    """Component -> distribution and version, plus omnikit version, git commit and the platform."""
    components: dict[str, Any] = {}
    model = cfg.get("model") or {}
    for slot, kind in SLOT_KINDS.items():
        if slot in model and model[slot] is not None:
            components[f"model.{slot}"] = _component(kind, str(model[slot].name))
    for key, node in (cfg.get("data") or {}).items():
        components[f"data.{key}"] = _component("dataset", str(node.name))
    for sname, stage in (cfg.get("stages") or {}).items():
        for oname in (stage.get("objectives") or {}):
            components[f"stages.{sname}.objectives.{oname}"] = _component("objective", str(oname))
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:  # pragma: no cover - torch is a dependency
        torch_version = None
    return {
        "omnikit_version": omnikit.__version__,
        "git_commit": git_commit(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": sys.version.split()[0],
        "torch": torch_version,
        "platform": platform.platform(),
        "components": components,
    }


def write_run_metadata(run_dir: Path, cfg: DictConfig) -> None:
    """Write ``recipe.yaml`` (resolved) and ``provenance.json`` into ``run_dir``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / "recipe.yaml", resolve=True)
    (run_dir / "provenance.json").write_text(json.dumps(provenance(cfg), indent=2) + "\n")
