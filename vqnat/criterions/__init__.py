"""vqnat's fairseq criterions; each import registers one."""

from vqnat.criterions import latent_transformer_loss  # noqa: F401
