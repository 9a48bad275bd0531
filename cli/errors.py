"""Turn errors into one-line messages and an exit code (no traceback for a user's mistake).

Every message starts with ``Error:``, as click's own usage errors do.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import NoReturn, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., object])

INTERRUPTED_EXIT = 130  # the shell's code for a run stopped by Ctrl-C (128 + SIGINT)


def fail(message: object, code: int = 1) -> NoReturn:
    """Print ``Error: <message>`` (its first line) on stderr and exit with ``code``."""
    text = str(message).strip()
    typer.secho(f"Error: {text}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=code)


def friendly_errors(fn: F) -> F:
    """Run a command: a user's mistake (``ValueError``, ``OSError``, a failed fairseq tool) becomes one
    ``Error: ...`` line and exit code 1; Ctrl-C becomes ``Error: interrupted`` and exit code 130. Anything else
    is a bug: one line too, and with ``vqnat --verbose`` the traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:
            fail("interrupted", code=INTERRUPTED_EXIT)
        except (ValueError, OSError) as err:
            fail(_describe_os_error(err) if isinstance(err, OSError) else err)
        except Exception as err:
            from vqnat.pipeline.fairseq_run import FairseqError

            if isinstance(err, FairseqError):
                fail(err)
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                raise
            fail(f"unexpected {type(err).__name__}: {err} (vqnat --verbose ... shows the traceback)")

    return wrapper  # type: ignore[return-value]


def _describe_os_error(err: OSError) -> str:
    """``IsADirectoryError(21, 'Is a directory', 'x')`` -> ``x: is a directory``; ``FileNotFoundError`` keeps
    its message when it has no file name."""
    if err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror[0].lower()}{err.strerror[1:]}"
    return str(err)
