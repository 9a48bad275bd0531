"""Settings shared by every Typer app of the CLI.

Help and usage errors are plain click text: no boxes, flags without a ``<bool>`` type, and usage errors that begin
with ``Error:`` like the commands' own (see :mod:`cli.errors`). Uncaught exceptions are not drawn by rich either
(commands turn them into one line).
"""

from __future__ import annotations

TYPER_SETTINGS: dict[str, object] = {
    "no_args_is_help": True,
    "rich_markup_mode": None,
    "pretty_exceptions_enable": False,
}
