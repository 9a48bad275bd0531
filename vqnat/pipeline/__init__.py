"""The translation pipeline: train a teacher, distill, train the latent transformer, evaluate, benchmark.

Each step wraps fairseq's own tools (binarization, training loop, checkpointing, beam search); vqnat adds the
plumbing between them and the measurements.
"""
