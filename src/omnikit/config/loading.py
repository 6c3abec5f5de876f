"""Load a recipe: ``include:`` base files, then the file, then command-line dotlist overrides."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from omnikit.config.errors import Problem, RecipeError


def packaged_recipes_dir() -> Path:
    """The recipes shipped inside the omnikit package (same files as the repository's ``recipes/``)."""
    return Path(str(resources.files("omnikit") / "recipes"))


def resolve_recipe_path(name: str | Path, relative_to: Path | None = None) -> Path:
    """A recipe path as given, relative to the including file, or a packaged recipe name."""
    p = Path(name)
    candidates = [p] if p.is_absolute() else []
    if not p.is_absolute():
        if relative_to is not None:
            candidates.append(relative_to / p)
        candidates += [Path.cwd() / p, packaged_recipes_dir() / p]
        if p.parts and p.parts[0] == "recipes":
            candidates.append(packaged_recipes_dir().joinpath(*p.parts[1:]))
        if not p.suffix:  # a bare packaged name: `quickstart` means quickstart.yaml
            candidates.append(packaged_recipes_dir() / p.with_suffix(".yaml"))
    for c in candidates:
        if c.is_file():
            return c.resolve()
    raise RecipeError([Problem("include" if relative_to else "", f"recipe file not found: {name}")])


def merge_recipe(base: DictConfig, over: DictConfig) -> DictConfig:
    """OmegaConf merge, except that a component whose ``name`` changes gets the new ``args`` only: the
    arguments of one component mean nothing to another (``model.<slot>`` and ``data.<source>``)."""
    base = base.copy()
    for section in ("model", "data"):
        old, new = base.get(section), over.get(section)
        if not isinstance(old, DictConfig) or not isinstance(new, DictConfig):
            continue
        for key in new.keys():
            o, n = old.get(key), new.get(key)
            if (isinstance(o, DictConfig) and isinstance(n, DictConfig) and "name" in n and "name" in o
                    and not OmegaConf.is_missing(n, "name") and n.name != o.name and "args" in o):
                o.pop("args")
    merged = OmegaConf.merge(base, over)
    assert isinstance(merged, DictConfig)
    return merged


def _load_file(path: Path, stack: tuple[Path, ...]) -> DictConfig:
    if path in stack:
        chain = " -> ".join(str(s) for s in (*stack, path))
        raise RecipeError([Problem("include", f"include cycle: {chain}")])
    try:
        node = OmegaConf.load(path)
    except (OmegaConfBaseException, OSError, ValueError, yaml.YAMLError) as exc:
        first = " ".join(str(exc).split())
        raise RecipeError([Problem("", f"cannot parse {path}: {first}")]) from exc
    if not isinstance(node, DictConfig):
        raise RecipeError([Problem("", f"{path} must hold a mapping at the top level")])
    includes = node.pop("include", None) or []
    if isinstance(includes, str):
        includes = [includes]
    merged = OmegaConf.create()
    for inc in includes:
        merged = merge_recipe(merged, _load_file(resolve_recipe_path(inc, path.parent), (*stack, path)))
    return merge_recipe(merged, node)


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> DictConfig:
    """The merged recipe (interpolations left in place; ``resolved()`` resolves them)."""
    cfg = _load_file(resolve_recipe_path(path), ())
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise RecipeError([Problem(o, "override must look like key=value") for o in bad])
    try:
        merged = merge_recipe(cfg, OmegaConf.from_dotlist(list(overrides)))
    except OmegaConfBaseException as exc:
        raise RecipeError([Problem("", f"bad override: {exc}")]) from exc
    problems = _stage_override_problems(cfg, merged, overrides)
    if problems:
        raise RecipeError(problems, "overrides")
    return merged


def _stage_override_problems(before: DictConfig, after: DictConfig, overrides: Sequence[str]) -> list[Problem]:
    """``stages.<name>...`` overrides must reach a stage that runs: a misspelt or unscheduled stage name would
    otherwise be merged in silently and change nothing."""
    known = list((before.get("stages") or {}).keys())
    schedule = [str(s) for s in (after.get("schedule") or [])]
    problems = []
    for o in overrides:
        key = o.split("=", 1)[0].strip()
        parts = key.split(".")
        if len(parts) < 2 or parts[0] != "stages":
            continue
        name = parts[1]
        if name not in known and name not in schedule:
            near = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            problems.append(Problem(key, f"no stage '{name}' in the recipe (stages: {', '.join(known) or 'none'})",
                                    near[0] if near else None))
        elif schedule and name not in schedule:
            problems.append(Problem(key, f"stage '{name}' is not in the schedule ({', '.join(schedule)}): "
                                         "this override would change nothing"))
    return problems


def resolved(cfg: DictConfig) -> DictConfig:
    """A copy with every interpolation resolved (``???`` values stay missing)."""
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False))
    assert isinstance(out, DictConfig)
    return out
