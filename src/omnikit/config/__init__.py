"""Recipes: loading with includes and overrides, validation against the registries, provenance."""

from omnikit.config.errors import Problem, RecipeError, RunDirConflict
from omnikit.config.loading import (
    load_recipe,
    merge_recipe,
    packaged_recipes_dir,
    resolve_recipe_path,
    resolved,
)
from omnikit.config.validation import SLOT_KINDS, check_args, find_problems, validate_recipe

__all__ = [
    "SLOT_KINDS",
    "Problem",
    "RecipeError",
    "RunDirConflict",
    "check_args",
    "find_problems",
    "load_recipe",
    "merge_recipe",
    "packaged_recipes_dir",
    "resolve_recipe_path",
    "resolved",
    "validate_recipe",
]
