"""Vector quantization trained by expectation maximisation (Roy et al. 2018).

Pure PyTorch: nothing here imports fairseq, so the bottleneck can be used on any tensor ``[..., dim]``.

- :class:`EMACodebook` holds the codes and their exponential-moving-average statistics (the M step).
- :class:`QuantizerConfig` holds the bottleneck's settings under the names both models' options use.
- :class:`VectorQuantizer` is the user-facing bottleneck: assignment (hard or soft E step), straight-through
  estimator, commitment loss and codebook-health metrics.

Only the config is imported eagerly: it needs no torch, so command-line layers read their defaults from it
without loading torch; the rest loads on first use.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from vqnat.quantization.config import BOTTLENECKS, QuantizerConfig

if TYPE_CHECKING:
    from vqnat.quantization.codebook import EMACodebook
    from vqnat.quantization.stats import dead_code_fraction, usage_perplexity
    from vqnat.quantization.vector_quantizer import QuantizerOutput, VectorQuantizer, soft_targets

_SUBMODULE = {"EMACodebook": "codebook", "dead_code_fraction": "stats", "usage_perplexity": "stats",
              "QuantizerOutput": "vector_quantizer", "VectorQuantizer": "vector_quantizer",
              "soft_targets": "vector_quantizer"}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULE:
        return getattr(import_module(f"vqnat.quantization.{_SUBMODULE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "BOTTLENECKS",
    "EMACodebook",
    "QuantizerConfig",
    "QuantizerOutput",
    "VectorQuantizer",
    "dead_code_fraction",
    "soft_targets",
    "usage_perplexity",
]
