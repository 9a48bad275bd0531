"""Settings shared by every Typer app of the CLI.

Help and usage errors are plain click text: no boxes, flags without a ``<bool>`` type, and usage errors that begin
with ``Error:`` like the commands' own (see :mod:`vqnat_cli.errors`). Uncaught exceptions are not drawn by rich either
(commands turn them into one line).
"""

from __future__ import annotations

import inspect

import typer

TYPER_SETTINGS: dict[str, object] = {
    "no_args_is_help": True,
    "rich_markup_mode": None,
    "pretty_exceptions_enable": False,
}
# The context of a command whose unknown options go on to a fairseq tool (read them from ``ctx.args``).
PASSTHROUGH: dict[str, bool] = {"allow_extra_args": True, "ignore_unknown_options": True}


def keep_examples_as_written(app: typer.Typer) -> None:
    """Have click print every ``Example`` paragraph of the commands' help as written: its re-wrapping would break a
    command line at a hyphen (``work/nat-`` / ``soft``). Marks those paragraphs with click's ``\\b``."""
    for info in app.registered_commands:
        if info.callback is not None and info.callback.__doc__:
            info.callback.__doc__ = _mark_examples(inspect.cleandoc(info.callback.__doc__))
    for group in app.registered_groups:
        if group.typer_instance is not None:
            keep_examples_as_written(group.typer_instance)


def _mark_examples(doc: str) -> str:
    paragraphs = doc.split("\n\n")
    return "\n\n".join("\b\n" + p if p.lstrip().startswith(("Example", "vqnat ")) else p for p in paragraphs)
