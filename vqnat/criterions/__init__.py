"""vqnat's fairseq criterions; each import registers one."""

import vqnat.criterions.image_bits  # noqa: F401
from vqnat.criterions import latent_transformer_loss  # noqa: F401
