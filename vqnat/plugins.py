"""Registering vqnat's fairseq plugins (models, tasks, criterions) without importing fairseq before it is needed.

``import vqnat`` costs seconds when it imports fairseq (and torch). :func:`register_with_fairseq` registers the
plugins at once when fairseq is already imported (``fairseq-train --user-dir``), and otherwise the moment
fairseq is first imported, so ``import vqnat`` stays cheap and fairseq still always sees the plugins. The
registration also makes fairseq's checkpoint copies atomic (:mod:`vqnat.pipeline.safe_checkpoints`).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import logging
import sys
from importlib.machinery import ModuleSpec

logger = logging.getLogger(__name__)


def register_now() -> None:
    """Import the plugin modules (each import registers one plugin) and patch fairseq's checkpoint copies."""
    from vqnat import criterions, models, tasks  # noqa: F401
    from vqnat.pipeline.safe_checkpoints import make_checkpoint_copies_atomic

    make_checkpoint_copies_atomic()


def register_with_fairseq() -> None:
    """Register the plugins now if fairseq is imported, else as soon as it is (nothing when it is not installed)."""
    if "fairseq" in sys.modules:
        register_now()
    elif importlib.util.find_spec("fairseq") is None:
        logger.debug("fairseq is not installed: vqnat's fairseq plugins are not registered")
    elif not any(isinstance(finder, _RegisterAfterFairseq) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterFairseq())


class _RegisterAfterFairseq(importlib.abc.MetaPathFinder):
    """Finds nothing itself: on the import of ``fairseq`` it wraps the real loader so that the plugins are
    registered right after fairseq's own ``__init__`` has run, then removes itself."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> ModuleSpec | None:
        if name != "fairseq":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _ThenRegister(spec.loader)
        return spec


class _ThenRegister(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: ModuleSpec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        self.loader.exec_module(module)
        register_now()

    def __getattr__(self, name: str):  # get_resource_reader, is_package, ... of the real loader
        return getattr(self.loader, name)
