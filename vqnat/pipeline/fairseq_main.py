"""``python -m vqnat.pipeline.fairseq_main <tool> <args>``: fairseq's ``fairseq_cli.<tool>`` with vqnat imported first.

Importing vqnat registers its plugins and makes fairseq's checkpoint copies atomic (see :mod:`vqnat.plugins`), also
for a run without ``--user-dir`` (the autoregressive teacher).
"""

from __future__ import annotations

import runpy
import sys

import vqnat  # noqa: F401  (registers the plugins when fairseq is imported)


def main() -> None:
    tool, *args = sys.argv[1:]
    sys.argv = [sys.argv[0], *args]  # as fairseq_cli.<tool> reads them (run_module sets argv[0] to its file)
    runpy.run_module(f"fairseq_cli.{tool}", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
