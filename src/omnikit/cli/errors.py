"""Map failures to exit codes: recipe problems 2, runtime failures 1 (one line; traceback with --verbose)."""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Iterator

import typer

from omnikit.config import RecipeError, RunDirConflict
from omnikit.registry import UnknownComponentError

EXIT_RUNTIME = 1
EXIT_CONFIG = 2


class UsageError(Exception):
    """A wrong command-line argument the user can fix (exit code 2)."""


@contextlib.contextmanager
def guarded(verbose: bool = False) -> Iterator[None]:
    try:
        yield
    except typer.Exit:
        raise
    except (RecipeError, RunDirConflict, UsageError, UnknownComponentError) as exc:
        if verbose:
            traceback.print_exc(file=sys.stderr)
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    except KeyboardInterrupt as exc:  # a stage's interruption says how to resume
        typer.echo(f"interrupted: {exc}" if str(exc) else "interrupted", err=True)
        raise typer.Exit(130) from None
    except Exception as exc:
        if verbose:
            traceback.print_exc(file=sys.stderr)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        hint = "" if verbose else " (run with --verbose for the traceback)"
        typer.echo(f"error: {type(exc).__name__}: {first}{hint}", err=True)
        raise typer.Exit(EXIT_RUNTIME) from None
