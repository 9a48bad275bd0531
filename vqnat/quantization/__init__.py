"""Vector quantization trained by expectation maximisation (Roy et al. 2018).

Pure PyTorch: nothing here imports fairseq, so the bottleneck can be used on any tensor ``[..., dim]``.

- :class:`EMACodebook` holds the codes and their exponential-moving-average statistics (the M step).
- :class:`QuantizerConfig` holds the bottleneck's settings under the names both models' options use.
- :class:`VectorQuantizer` is the user-facing bottleneck: assignment (hard or soft E step), straight-through
  estimator, commitment loss and codebook-health metrics.
"""

from vqnat.quantization.codebook import EMACodebook
from vqnat.quantization.config import BOTTLENECKS, QuantizerConfig
from vqnat.quantization.stats import dead_code_fraction, usage_perplexity
from vqnat.quantization.vector_quantizer import QuantizerOutput, VectorQuantizer, soft_targets

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
