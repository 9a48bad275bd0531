"""vqnat's fairseq tasks; each import registers one."""
