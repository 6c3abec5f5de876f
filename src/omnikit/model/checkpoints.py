"""Stage outputs: safetensors of what a stage trained, the ``init`` hand-off, done markers, resume.

Layout of a run directory::

    run_dir/
      recipe.yaml, provenance.json        written by the CLI
      run.json                            where the run lives and the model it trains (see check_run_dir)
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

import dataclasses
import hashlib
import json
import shlex
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file, save_file
from torch import nn

from omnikit.model.build import WEIGHT_SLOTS

STAGE_PREFIX = "stage:"
WEIGHTS = "trained.safetensors"
DONE = "done.json"
RUN_FILE = "run.json"
PLACEMENT_ARGS = ("device",)
"""Component args that say where a part runs, not what it is: left out of the model fingerprint."""


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


# ---------------------------------------------------------------------------------------------- run identity
def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def model_spec(cfg: DictConfig | dict[str, Any]) -> dict[str, Any]:
    """The model-shaping part of a recipe: per weight slot its ``name``, ``init``, ``trainable`` and ``args``
    with every default filled in (so ``layers: 2`` written out equals the default 2), placement args left out."""
    from omnikit.registry import get_registry

    model = cfg.get("model") if isinstance(cfg, dict) else OmegaConf.select(cfg, "model", default=None)
    if isinstance(model, DictConfig):
        model = OmegaConf.to_container(model, resolve=True)
    spec: dict[str, Any] = {}
    for slot in WEIGHT_SLOTS:  # the weight slots (duplex_policy and vad shape no weights)
        node = (model or {}).get(slot)
        if not isinstance(node, dict):
            continue
        args = dict(node.get("args") or {})
        try:
            args = dataclasses.asdict(get_registry(slot).make_config(str(node.get("name")), args))
        except Exception:  # noqa: BLE001 - an unknown component or bad args: compare what was written
            pass
        entry = {"name": node.get("name"), **{k: v for k, v in node.items() if k not in ("name", "args")}}
        entry["args"] = {k: v for k, v in args.items() if k not in PLACEMENT_ARGS}
        spec[slot] = _plain(entry)
    return spec


def model_fingerprint(spec: dict[str, Any]) -> str:
    return hashlib.blake2b(json.dumps(spec, sort_keys=True).encode(), digest_size=8).hexdigest()


_ABSENT = object()


def first_difference(old: Any, new: Any, path: str = "model") -> tuple[str, Any, Any] | None:
    """The first key (dotted path) where two specs differ, with the old and new values (``_ABSENT``: no key)."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            found = first_difference(old.get(key, _ABSENT), new.get(key, _ABSENT), f"{path}.{key}")
            if found:
                return found
        return None
    return None if old == new else (path, old, new)


def resume_command(run_dir: Path, stage: str | None = None) -> str:
    """The command that continues this run from any folder (absolute paths, the run dir named)."""
    run_dir = Path(run_dir).resolve()
    cmd = f"omnikit run {shlex.quote(str(run_dir / 'recipe.yaml'))} --run-dir {shlex.quote(str(run_dir))}"
    return cmd + (f" --stage {stage}" if stage else "")


def read_run_record(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / RUN_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def _trained_with(run_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    """(what, model section) of every stage output in ``run_dir``: finished stages from their own recipe, an
    interrupted one (a Lightning checkpoint) from ``run.json``."""
    out: list[tuple[str, dict[str, Any]]] = []
    stages = Path(run_dir) / "stages"
    record = read_run_record(run_dir)
    for sdir in sorted(stages.iterdir()) if stages.is_dir() else []:
        recipe = sdir / "recipe.yaml"
        if (sdir / DONE).is_file() and recipe.is_file():
            loaded = OmegaConf.load(recipe)
            model = loaded.get("model") if isinstance(loaded, DictConfig) else None
            out.append((f"finished stage '{sdir.name}' ({recipe})",
                        {"model": OmegaConf.to_container(model, resolve=True) if model is not None else {}}))
        elif (sdir / "lightning" / "last.ckpt").is_file() and record is not None:
            out.append((f"interrupted stage '{sdir.name}' ({Path(run_dir) / RUN_FILE})",
                        {"model": record.get("model") or {}}))
    return out


def check_run_dir(cfg: DictConfig, run_dir: Path) -> None:
    """Refuse to continue a run directory whose stages were trained with a different model (exit code 2):
    skipping a finished stage, or loading its weights into a changed model, would silently mix two models."""
    from omnikit.config.errors import RunDirConflict

    spec = model_spec(cfg)
    for what, trained in _trained_with(run_dir):
        diff = first_difference(model_spec(trained), spec)
        if diff is None:
            continue
        key, old, new = diff

        def show(v: Any) -> str:
            return "absent" if v is _ABSENT else json.dumps(v)

        where = Path(run_dir).resolve()
        raise RunDirConflict(
            f"{where} holds stages of a different model: {key} is {show(new)} in this recipe but {show(old)} in "
            f"the {what}. Start a fresh run directory (add --run-dir NEW_FOLDER), or delete {where} to retrain "
            "it from scratch.")


def write_run_record(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """``run.json``: where the run lives, its recipe, and the model its stages train (fingerprint and section)."""
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    model = OmegaConf.select(cfg, "model", default=None)
    record = {
        "run_dir": str(run_dir),
        "recipe": str(run_dir / "recipe.yaml"),
        "resume": resume_command(run_dir),
        "model_fingerprint": model_fingerprint(model_spec(cfg)),
        "model": _plain(OmegaConf.to_container(model, resolve=True)) if model is not None else {},
    }
    tmp = run_dir / (RUN_FILE + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(run_dir / RUN_FILE)
    return record
