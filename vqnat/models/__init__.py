"""vqnat's fairseq models; each import registers one."""
