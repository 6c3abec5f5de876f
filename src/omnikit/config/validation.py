"""Check a recipe against the registries, the components' config classes and the schemas of its plain sections
(``omnikit.config.sections``: every stage's ``optim``, ``trainer``, ``batch`` and ``batch.augment``, ``inference``
and ``eval``); collect every problem, so that a typo anywhere stops ``omnikit validate`` and ``omnikit run``
before anything starts."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from omnikit.config.errors import Problem, RecipeError
from omnikit.config.sections import STAGE_OPTIONS, EvalConfig, InferenceConfig
from omnikit.registry import RegistryError, UnknownComponentError, get_registry
from omnikit.registry.fields import near, unknown_keys

TOP_LEVEL_KEYS = (
    "omnikit", "name", "description", "seed", "profile", "paths", "model", "data", "schedule", "stages",
    "inference", "eval",
)
SLOT_KINDS = {
    "encoder": "encoder",
    "adapter": "adapter",
    "llm": "llm",
    "speech_decoder": "speech_decoder",
    "codec": "codec",
    "duplex_policy": "duplex_policy",
    "vad": "vad",
}
"""Model slot -> plugin kind."""
SLOT_KEYS = ("name", "args", "init", "trainable")
DATA_KEYS = ("name", "args")
STAGE_KEYS = ("description", "trainable", "objectives", "data", "init", "optim", "trainer", "batch")
STAGE_DATA_KEYS = ("source", "train", "val")
SCHEMA_VERSION = 1


def _near(word: str, options: typing.Iterable[str]) -> str | None:
    return near(word, options)


def _unknown_keys(node: Any, allowed: typing.Sequence[str], path: str, what: str) -> list[Problem]:
    if not isinstance(node, DictConfig):
        return []
    return [
        Problem(f"{path}.{k}" if path else str(k), f"unknown {what} key", _near(str(k), allowed))
        for k in node.keys()
        if k not in allowed
    ]


def _type_ok(value: Any, hint: Any) -> bool:
    """A lenient structural type check of a plain (resolved) value against a type hint."""
    if hint is Any or value is None and _allows_none(hint):
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin in (list, tuple, typing.Sequence) or hint in (list, tuple):
        if not isinstance(value, list | tuple):
            return False
        args = typing.get_args(hint)
        inner = args[0] if args and args[-1] is not Ellipsis or len(args) == 2 else Any
        return all(_type_ok(v, inner) for v in value) if args and len(args) <= 2 else True
    if origin in (dict, typing.Mapping) or hint is dict:
        return isinstance(value, Mapping)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _allows_none(hint: Any) -> bool:
    return hint is type(None) or (
        typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)
    )


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(hint))
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _literal_near(value: Any, hint: Any) -> str | None:
    """The closest allowed string of a ``Literal`` hint (also inside ``X | None``) to a misspelt value."""
    options = [h for h in (typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType)
                           else (hint,)) if typing.get_origin(h) is typing.Literal]
    words = [str(v) for h in options for v in typing.get_args(h)]
    return near(value, words) if isinstance(value, str) and words else None


def check_args(config_class: type, args: Any, path: str, what: str = "argument") -> list[Problem]:
    """Unknown keys (with suggestions; the known ones when nothing is near), missing required fields, wrong
    types. ``what`` names a key in the messages: a component's ``argument``, a section's ``key``."""
    problems: list[Problem] = []
    if args is None:
        args = {}
    if not isinstance(args, Mapping | DictConfig):
        return [Problem(path, "args must be a mapping" if what == "argument" else "must be a mapping")]
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    hints = typing.get_type_hints(config_class)
    for key, suggestion in unknown_keys(config_class, args.keys()).items():
        known = "" if suggestion else f" (known: {', '.join(fields)})"
        problems.append(Problem(f"{path}.{key}", f"unknown {what}{known}", suggestion))
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        present = name in args.keys()
        if present and isinstance(args, DictConfig) and OmegaConf.is_missing(args, name):
            problems.append(Problem(f"{path}.{name}", "required value is missing (???)"))
            continue
        if not present:
            if required:
                problems.append(Problem(f"{path}.{name}", "required argument is missing"))
            continue
        try:
            value = args[name]
            if isinstance(value, DictConfig | ListConfig):
                value = OmegaConf.to_container(value, resolve=True)
        except OmegaConfBaseException as exc:
            problems.append(Problem(f"{path}.{name}", f"cannot resolve: {exc}".splitlines()[0]))
            continue
        if not _type_ok(value, hints.get(name, Any)):
            problems.append(Problem(f"{path}.{name}", f"expected {_type_name(hints.get(name))}, got {value!r}",
                                    _literal_near(value, hints.get(name))))
    return problems


def _check_component(kind: str, node: Any, path: str) -> list[Problem]:
    if not isinstance(node, DictConfig):
        return [Problem(path, "must be a mapping with `name` and `args`")]
    if "name" not in node or OmegaConf.is_missing(node, "name"):
        return [Problem(f"{path}.name", f"a {kind} name is required")]
    name = str(node.name)
    registry = get_registry(kind)
    try:
        cls = registry.get(name)
    except UnknownComponentError as exc:
        return [Problem(f"{path}.name", f"unknown {kind} '{name}'", exc.suggestion)]
    except RegistryError as exc:
        return [Problem(f"{path}.name", str(exc))]
    return check_args(cls.config_class, node.get("args"), f"{path}.args")


def _missing_values(node: Any, path: str) -> list[Problem]:
    out: list[Problem] = []
    if isinstance(node, DictConfig):
        for k in node.keys():
            p = f"{path}.{k}" if path else str(k)
            if OmegaConf.is_missing(node, k):
                out.append(Problem(p, "required value is missing (???)"))
            else:
                out += _missing_values(node._get_node(k), p)
    elif isinstance(node, ListConfig):
        for i in range(len(node)):
            out += _missing_values(node._get_node(i), f"{path}[{i}]")
    return out


def _unresolvable(cfg: DictConfig) -> list[Problem]:
    out: list[Problem] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, DictConfig):
            for k in node.keys():
                p = f"{path}.{k}" if path else str(k)
                if OmegaConf.is_missing(node, k):
                    continue
                try:
                    child = node[k]
                except OmegaConfBaseException as exc:
                    out.append(Problem(p, f"cannot resolve: {str(exc).splitlines()[0]}"))
                    continue
                walk(child, p)
        elif isinstance(node, ListConfig):
            for i in range(len(node)):
                try:
                    walk(node[i], f"{path}[{i}]")
                except OmegaConfBaseException as exc:
                    out.append(Problem(f"{path}[{i}]", f"cannot resolve: {str(exc).splitlines()[0]}"))

    walk(cfg, "")
    return out


def _stage_options(stage: DictConfig, spath: str) -> list[Problem]:
    """A stage's ``optim``, ``trainer`` and ``batch`` (with ``batch.augment``) against their schemas."""
    problems: list[Problem] = []
    try:
        options = {key: stage.get(key) for key in STAGE_OPTIONS}
        augment = options["batch"].get("augment") if isinstance(options["batch"], DictConfig) else None
    except OmegaConfBaseException:  # an unresolvable value: reported by _unresolvable
        return problems
    for key, schema in STAGE_OPTIONS.items():
        if options[key] is not None:
            problems += check_args(schema, options[key], f"{spath}.{key}", "key")
    if augment is not None:
        from omnikit.data.augment import AugmentConfig  # lazy: torchaudio

        problems += check_args(AugmentConfig, augment, f"{spath}.batch.augment", "key")
    return problems


def _inference_section(inference: Any) -> list[Problem]:
    """``inference`` against ``InferenceConfig``, its ``speech_tracker`` against the VAD tracker's config."""
    if inference is None:
        return []
    if not isinstance(inference, DictConfig):
        return [Problem("inference", "must be a mapping (see InferenceConfig)")]
    problems = check_args(InferenceConfig, {k: v for k, v in inference.items() if k != "speech_tracker"},
                          "inference", "key")
    if inference.get("speech_tracker") is not None:
        from omnikit.components.vads.vad_tracker import SpeechTrackerConfig  # lazy: torch

        problems += check_args(SpeechTrackerConfig, inference.get("speech_tracker"), "inference.speech_tracker",
                               "key")
    return problems


def find_problems(cfg: DictConfig) -> list[Problem]:
    """Every problem in the recipe, in config order."""
    problems = _unknown_keys(cfg, TOP_LEVEL_KEYS, "", "top-level")
    version = cfg.get("omnikit", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        problems.append(Problem("omnikit", f"schema version {version!r} is not supported (expected 1)"))
    problems += _unresolvable(cfg)
    model = cfg.get("model") or OmegaConf.create()
    problems += _unknown_keys(model, list(SLOT_KINDS), "model", "model slot")
    for slot, kind in SLOT_KINDS.items():
        if slot in model and model[slot] is not None:
            problems += _unknown_keys(model[slot], SLOT_KEYS, f"model.{slot}", "slot")
            problems += _check_component(kind, model[slot], f"model.{slot}")
    data = cfg.get("data") or OmegaConf.create()
    for key in data.keys():
        problems += _unknown_keys(data[key], DATA_KEYS, f"data.{key}", "data source")
        problems += _check_component("dataset", data[key], f"data.{key}")
    stages = cfg.get("stages") or OmegaConf.create()
    schedule = cfg.get("schedule") or []
    for i, stage in enumerate(schedule):
        if stage not in stages:
            problems.append(Problem(f"schedule[{i}]", f"stage '{stage}' is not defined under `stages`",
                                    _near(str(stage), stages.keys())))
    for sname in stages.keys():
        stage = stages[sname]
        spath = f"stages.{sname}"
        problems += _unknown_keys(stage, STAGE_KEYS, spath, "stage")
        if not isinstance(stage, DictConfig):
            continue
        for oname, spec in (stage.get("objectives") or {}).items():
            opath = f"{spath}.objectives.{oname}"
            try:
                cls = get_registry("objective").get(str(oname))
            except UnknownComponentError as exc:
                problems.append(Problem(opath, f"unknown objective '{oname}'", exc.suggestion))
                continue
            except RegistryError as exc:
                problems.append(Problem(opath, str(exc)))
                continue
            if isinstance(spec, DictConfig):
                problems += _unknown_keys(spec, ("weight", "args"), opath, "objective")
                problems += check_args(cls.config_class, spec.get("args"), f"{opath}.args")
            elif not isinstance(spec, int | float):
                problems.append(Problem(opath, "objective must be a weight or {weight, args}"))
        sdata = stage.get("data")
        if isinstance(sdata, DictConfig):
            problems += _unknown_keys(sdata, STAGE_DATA_KEYS, f"{spath}.data", "stage data")
            src = sdata.get("source")
            if src is not None and src not in data:
                problems.append(Problem(f"{spath}.data.source", f"no data source '{src}' under `data`",
                                        _near(str(src), data.keys())))
        for slot in (stage.get("init") or {}).keys():
            if slot not in SLOT_KINDS:
                problems.append(Problem(f"{spath}.init.{slot}", "unknown model slot", _near(str(slot), SLOT_KINDS)))
        problems += _stage_options(stage, spath)
    problems += _inference_section(cfg.get("inference"))
    ev = cfg.get("eval")
    if isinstance(ev, DictConfig):
        problems += check_args(EvalConfig, ev, "eval", "key")
    elif ev is not None:
        problems.append(Problem("eval", "must be a mapping (see `evaluate_run`'s EvalConfig)"))
    problems += _missing_values(cfg, "")
    # keep one report per path (a missing value may be found by two checks)
    seen: set[str] = set()
    unique = []
    for p in problems:
        if p.path not in seen:
            seen.add(p.path)
            unique.append(p)
    return unique


def validate_recipe(cfg: DictConfig, source: str = "recipe") -> None:
    """Raise ``RecipeError`` listing every problem, or return quietly."""
    problems = find_problems(cfg)
    if problems:
        raise RecipeError(problems, source)
