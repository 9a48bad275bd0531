"""vqnat's fairseq models; each import registers one."""

from vqnat.models import latent_transformer  # noqa: F401
