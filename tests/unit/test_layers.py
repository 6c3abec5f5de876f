"""The architecture points one way: parse every module's imports (``ast``, function-level imports included) and
fail on an import of training from inference or serving, or on an import loop between top-level subpackages
or between files. Reading source only: nothing of omnikit is imported."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "omnikit"


def modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package ``__init__``) of every module under ``src/omnikit``."""
    out = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


MODULES = modules()


def imports_of(name: str, path: Path, is_pkg: bool) -> list[tuple[str, int]]:
    """(imported omnikit module, line) for every import statement of a module, wherever it stands."""
    package = name if is_pkg else name.rsplit(".", 1)[0]
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((target, node.lineno))
            # `from omnikit.x import y` imports the module omnikit.x.y when y is one
            found += [(f"{target}.{a.name}", node.lineno) for a in node.names if f"{target}.{a.name}" in MODULES]
    return [(t, line) for t, line in found if t == PACKAGE or t.startswith(PACKAGE + ".")]


def owning_module(target: str) -> str | None:
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def folder(module: str) -> str | None:
    """The top-level subpackage of a module (``omnikit.training.runner`` -> ``training``); None for
    ``omnikit/*.py`` files such as ``interfaces``, which every layer may use."""
    parts = module.split(".")
    if len(parts) < 3 and not (len(parts) == 2 and MODULES.get(module, (None, False))[1]):
        return None
    return parts[1]


def file_edges() -> dict[str, dict[str, int]]:
    """module -> {imported module: first line}, a package's own ``__init__`` left out of its modules' edges."""
    edges: dict[str, dict[str, int]] = defaultdict(dict)
    for name, (path, is_pkg) in MODULES.items():
        for target, line in imports_of(name, path, is_pkg):
            owner = owning_module(target)
            if owner is None or owner == name or (MODULES[owner][1] and name.startswith(owner + ".")):
                continue
            edges[name].setdefault(owner, line)
    return edges


def folder_edges() -> dict[str, dict[str, str]]:
    """folder -> {imported folder: one 'module:line -> module' that shows it}."""
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for src, targets in file_edges().items():
        for dst, line in targets.items():
            a, b = folder(src), folder(dst)
            if a and b and a != b:
                out[a].setdefault(b, f"{src}:{line} -> {dst}")
    return out


def cycles(graph: dict[str, dict[str, str]] | dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_parser_sees_imports_at_every_level_and_relative_ones(tmp_path):
    mod = tmp_path / "m.py"
    mod.write_text("import omnikit.registry\nfrom . import x\n"
                   "def f():\n    from omnikit.training.runner import run_recipe\n")
    found = [t for t, _ in imports_of("omnikit.inference.m", mod, False)]
    assert found[0] == "omnikit.registry" and "omnikit.inference" in found
    assert "omnikit.training.runner" in found  # a lazy import inside a function counts too
    assert cycles({"a": {"b": ""}, "b": {"c": ""}, "c": {"a": ""}, "d": {"a": ""}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("layer", ["inference", "serving"])
def test_running_a_model_never_imports_training(layer):
    bad = [f"{src}:{line} -> {dst}" for src, targets in file_edges().items() if folder(src) == layer
           for dst, line in targets.items() if folder(dst) == "training"]
    assert not bad, f"{layer}/ imports training/ (move what both need to omnikit.model): {bad}"


def test_no_import_loop_between_top_level_subpackages():
    graph = folder_edges()
    loops = cycles(graph)
    detail = [[graph[a][b] for a in loop for b in loop if b in graph.get(a, {})] for loop in loops]
    assert not loops, f"folder import loops {loops}: {detail}"
    assert {"training", "inference", "evaluation", "config", "data", "components"} <= set(graph)  # it saw them


def test_no_import_loop_between_files():
    loops = cycles(file_edges())
    assert not loops, f"file import loops: {loops}"
