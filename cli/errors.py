"""Turn library errors into one-line messages and exit code 1 (no traceback for a user's mistake)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import typer

from vqnat.pipeline.fairseq_run import FairseqError

F = TypeVar("F", bound=Callable[..., object])


def friendly_errors(fn: F) -> F:
    """Run a command; a ValueError / FileNotFoundError / FairseqError becomes ``error: ...`` and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, FileNotFoundError) as err:
            typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=1) from None
        except FairseqError as err:
            typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=1) from None

    return wrapper  # type: ignore[return-value]
