"""The one place where vqnat lets fairseq unpickle checkpoints.

fairseq checkpoints are pickles: loading one can run arbitrary code. torch >= 2.6 refuses them unless
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` is set, so vqnat sets it here, and only here, right before fairseq loads a
checkpoint. Only load checkpoints you trust (your own, or from a source you would run code from).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping

TRUSTED_LOAD_ENV = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}


def allow_trusted_checkpoint_loading() -> None:
    """Let fairseq's ``torch.load`` unpickle checkpoints in this process (see module docstring).

    torch then warns, on every load, that the variable is set: vqnat set it on purpose, so that warning is muted.
    """
    os.environ.update(TRUSTED_LOAD_ENV)
    warnings.filterwarnings("ignore", message="Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD detected",
                            category=UserWarning)


def trusted_checkpoint_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a fairseq subprocess (generate, resume) that loads trusted checkpoints."""
    env = dict(os.environ if base is None else base)
    env.update(TRUSTED_LOAD_ENV)
    return env
