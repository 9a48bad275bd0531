"""vqnat's fairseq tasks; each import registers one."""

from vqnat.tasks import latent_translation  # noqa: F401
