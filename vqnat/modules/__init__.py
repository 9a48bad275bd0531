"""Building blocks shared by vqnat's models (pure PyTorch, batch-first ``[B, T, D]``)."""
