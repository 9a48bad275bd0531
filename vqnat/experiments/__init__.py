"""Small, self-contained experiments that the CLI runs (demo, comparisons)."""
