"""vqnat's fairseq criterions; each import registers one."""
