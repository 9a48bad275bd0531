"""vqnat: fast non-autoregressive translation with EM-trained vector-quantized latents.

Importing ``vqnat`` registers its fairseq models, tasks and criterions (when fairseq is installed: at once if
fairseq is imported already, else the moment it is; see :mod:`vqnat.plugins`), so
``fairseq-train --user-dir <path to this folder>`` and ``import vqnat`` are equivalent. The bottleneck in
:mod:`vqnat.quantization` is pure PyTorch and works without fairseq.
"""

import logging

__version__ = "0.1.0"

# fairseq's text-to-speech task (which vqnat never uses) logs "Please install tensorboardX" at import time.
logging.getLogger("fairseq.tasks.text_to_speech").setLevel(logging.WARNING)

from vqnat.plugins import register_with_fairseq  # noqa: E402

register_with_fairseq()
