"""Fixtures of the CLI tests: the tiny real checkpoints, in folders their loaders trust."""

from __future__ import annotations

from pathlib import Path

import pytest

from vqnat import checkpoint


@pytest.fixture(scope="session")
def tiny_models(tiny_checkpoints):
    """The session's tiny NAT and teacher, each in a folder marked as a training folder of this machine."""
    mark = getattr(checkpoint, "mark_own_save_dir", None)
    if mark is not None:
        for model in (tiny_checkpoints.nat, tiny_checkpoints.teacher):
            mark(Path(model).parent)
    return tiny_checkpoints
