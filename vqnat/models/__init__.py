"""vqnat's fairseq models; each import registers one."""

import vqnat.models.image_vqvae  # noqa: F401
from vqnat.models import latent_transformer  # noqa: F401
