"""Stage outputs: safetensors of what a stage trained, the ``init`` hand-off, done markers, resume.

Layout of a run directory::

    run_dir/
      recipe.yaml, provenance.json        written by the CLI
      cmvn.json                           global CMVN of the training features
      stages/<stage>/trained.safetensors  the parameters (and buffers) this stage trained, slot-prefixed names
      stages/<stage>/recipe.yaml          the resolved recipe that produced them
      stages/<stage>/done.json            written last: a finished stage is skipped on re-run
      stages/<stage>/lightning/last.ckpt  Lightning checkpoint for resuming an interrupted stage
      logs/<stage>/                       CSV and TensorBoard logs

Lightning checkpoints are files this run wrote itself; they are still loaded with ``weights_only=True``
(no arbitrary unpickling). Anything handed between stages or to users is safetensors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file, save_file
from torch import nn

STAGE_PREFIX = "stage:"
WEIGHTS = "trained.safetensors"
DONE = "done.json"


def stage_dir(run_dir: Path, stage: str) -> Path:
    return Path(run_dir) / "stages" / stage


def is_done(run_dir: Path, stage: str) -> bool:
    return (stage_dir(run_dir, stage) / DONE).is_file()


def read_done(run_dir: Path, stage: str) -> dict[str, Any]:
    return json.loads((stage_dir(run_dir, stage) / DONE).read_text())


def mark_done(run_dir: Path, stage: str, info: dict[str, Any]) -> None:
    path = stage_dir(run_dir, stage) / DONE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True))
    tmp.replace(path)


def last_lightning_checkpoint(run_dir: Path, stage: str) -> Path | None:
    path = stage_dir(run_dir, stage) / "lightning" / "last.ckpt"
    return path if path.is_file() else None


def trained_state(model: nn.ModuleDict, trained: list[str], whole_slots: list[str]) -> dict[str, torch.Tensor]:
    """The tensors a stage hands on: its trained parameters, plus every buffer of slots it trained whole
    (CMVN statistics, a fitted codebook) and of modules whose parameters it trained."""
    params = dict(model.named_parameters())
    state = {n: params[n] for n in trained}
    full = model.state_dict()
    trained_modules = {n.rsplit(".", 1)[0] for n in trained}
    for name in full:
        if name in params:
            continue
        owner = name.rsplit(".", 1)[0]
        if name.split(".", 1)[0] in whole_slots or owner in trained_modules:
            state[name] = full[name]
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def save_stage(
    run_dir: Path, stage: str, model: nn.ModuleDict, trained: list[str], whole_slots: list[str], cfg: DictConfig
) -> Path:
    out = stage_dir(run_dir, stage)
    out.mkdir(parents=True, exist_ok=True)
    path = out / WEIGHTS
    save_file(trained_state(model, trained, whole_slots), str(path), metadata={"stage": stage})
    (out / "recipe.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return path


def resolve_init(spec: str, run_dir: Path) -> Path:
    """``stage:<name>`` -> that stage's safetensors (which must be finished); else a safetensors path."""
    if spec.startswith(STAGE_PREFIX):
        name = spec[len(STAGE_PREFIX):]
        path = stage_dir(run_dir, name) / WEIGHTS
        if not is_done(run_dir, name) or not path.is_file():
            raise FileNotFoundError(
                f"init '{spec}': stage '{name}' has not finished in {run_dir} (run it first, or the whole schedule)"
            )
        return path
    path = Path(spec).expanduser()
    if path.suffix != ".safetensors" or not path.is_file():
        raise FileNotFoundError(f"init '{spec}': expected 'stage:<name>' or an existing .safetensors file")
    return path


def load_slot(model: nn.ModuleDict, slot: str, path: Path) -> list[str]:
    """Load the ``<slot>.``-prefixed tensors of ``path`` into ``model[slot]`` (a partial state is fine, keys
    that the slot lacks are an error). Returns the loaded names."""
    tensors = load_file(str(path))
    prefix = slot + "."
    picked = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    if not picked:
        raise ValueError(f"{path} holds no weights for slot '{slot}' (it has: "
                         f"{', '.join(sorted({k.split('.', 1)[0] for k in tensors}))})")
    result = model[slot].load_state_dict(picked, strict=False)
    if result.unexpected_keys:
        raise ValueError(f"{path}: tensors for {slot} that the model lacks: {result.unexpected_keys[:5]}")
    return sorted(prefix + k for k in picked)


def merged_weights(run_dir: Path, stages: list[str]) -> dict[str, torch.Tensor]:
    """All finished stages' tensors merged in schedule order (later stages win): the full trained system."""
    merged: dict[str, torch.Tensor] = {}
    for name in stages:
        path = stage_dir(run_dir, name) / WEIGHTS
        if is_done(run_dir, name) and path.is_file():
            merged.update(load_file(str(path)))
    return merged
