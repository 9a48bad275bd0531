"""vqnat's fairseq tasks; each import registers one."""

import vqnat.tasks.image_vq  # noqa: F401
from vqnat.tasks import latent_translation  # noqa: F401
