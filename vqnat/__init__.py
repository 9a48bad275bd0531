"""vqnat: fast non-autoregressive translation with EM-trained vector-quantized latents.

Importing ``vqnat`` registers its fairseq models, tasks and criterions (when fairseq is installed), so
``fairseq-train --user-dir <path to this folder>`` and ``import vqnat`` are equivalent. The bottleneck in
:mod:`vqnat.quantization` is pure PyTorch and works without fairseq.
"""

import logging

__version__ = "0.1.0"

logger = logging.getLogger(__name__)
# fairseq's text-to-speech task (which vqnat never uses) logs "Please install tensorboardX" at import time.
logging.getLogger("fairseq.tasks.text_to_speech").setLevel(logging.WARNING)

try:
    import fairseq  # noqa: F401
except ImportError:  # the quantizer alone needs only torch
    logger.debug("fairseq is not installed: vqnat's fairseq plugins are not registered")
else:
    from vqnat import criterions, models, tasks  # noqa: F401  (registers the plugins)
