"""Trusted checkpoint loading: fairseq's pickles load, without torch's warning about the variable vqnat sets."""

from __future__ import annotations

import os
import warnings

import torch

from vqnat.checkpoint import TRUSTED_LOAD_ENV, allow_trusted_checkpoint_loading, trusted_checkpoint_env


def test_trusted_loading_unpickles_without_the_environment_warning(tmp_path, monkeypatch):
    path = tmp_path / "state.pt"
    torch.save({"cfg": {"note": object.__name__}, "weights": torch.ones(2)}, path)
    for name in TRUSTED_LOAD_ENV:
        monkeypatch.delenv(name, raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        allow_trusted_checkpoint_loading()
        state = torch.load(path)  # as fairseq's load_checkpoint_to_cpu calls it: no weights_only
    assert os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] == "1"
    assert torch.equal(state["weights"], torch.ones(2))
    assert not [w for w in caught if "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" in str(w.message)]


def test_subprocess_environment_adds_the_variable_without_touching_the_base():
    base = {"PATH": "/bin"}
    env = trusted_checkpoint_env(base)
    assert env == {"PATH": "/bin", **TRUSTED_LOAD_ENV}
    assert base == {"PATH": "/bin"}
