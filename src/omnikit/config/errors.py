"""Recipe problems are collected, then reported all at once."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    path: str  # config path, e.g. "model.encoder.args.layers"
    message: str
    suggestion: str | None = None

    def __str__(self) -> str:
        hint = f"; did you mean '{self.suggestion}'?" if self.suggestion else ""
        return f"{self.path or '<root>'}: {self.message}{hint}"


class RecipeError(Exception):
    """One or more problems in a recipe (CLI exit code 2)."""

    def __init__(self, problems: list[Problem], source: str = "recipe"):
        self.problems = problems
        self.source = source
        lines = [f"{source}: {len(problems)} problem{'s' if len(problems) != 1 else ''}"]
        lines += [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines))


class RunDirConflict(Exception):
    """A run directory holds stages of a different model than the recipe builds (CLI exit code 2)."""
