"""Docker HEALTHCHECK of the vqnat images: GET /ready on the port the service was started with.

The port is read from the command line of the container's first process (``vqnat serve ... --port N``, or an init
such as ``docker run --init`` with that command after it), so a ``docker run IMAGE --port 9000`` is checked on
9000 with no second setting to keep in step. Exit code 0 when the service answers 200, else 1. Standard library
only: it runs every 30 s.
"""

from __future__ import annotations

import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path

DEFAULT_PORT = 8000  # `vqnat serve`'s default (vqnat_server.settings.Settings.port), see tests/server/test_docker.py


def port_from_argv(argv: Sequence[str], default: int = DEFAULT_PORT) -> int:
    """The value of the last ``--port N`` or ``--port=N`` in ``argv`` (the last one wins, as in the CLI)."""
    port = default
    for i, arg in enumerate(argv):
        if arg == "--port" and i + 1 < len(argv):
            port = int(argv[i + 1])
        elif arg.startswith("--port="):
            port = int(arg.split("=", 1)[1])
    return port


def main(cmdline: Path = Path("/proc/1/cmdline")) -> int:
    argv = cmdline.read_bytes().decode().split("\0")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port_from_argv(argv)}/ready", timeout=4) as response:
            return 0 if response.status == 200 else 1
    except OSError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
