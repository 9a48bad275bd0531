"""The bottleneck's settings: one dataclass, one set of names, each default and its help declared here once.

Both models take their bottleneck options from :class:`QuantizerConfig` (the translation model's
``LatentTransformerConfig`` and the image model's ``ImageVQVAEConfig`` inherit its fields), and build their
quantizer with :meth:`VectorQuantizer.from_config <vqnat.quantization.VectorQuantizer.from_config>`. The names are
the ones the shipped bundles store in their ``config.json``. A model that wants other values sets them in its
architecture presets; it does not declare the fields again.

No ``from __future__ import annotations`` here: fairseq reads the field types at run time.
"""

from dataclasses import dataclass, field

BOTTLENECKS = ("hard", "soft")  # the E step: nearest code (EMA k-means) or m codes sampled from the posterior


@dataclass
class QuantizerConfig:
    """Settings of :class:`~vqnat.quantization.VectorQuantizer` (defaults: the translation model's)."""

    bottleneck: str = field(default="soft", metadata={"help": "hard EM (EMA k-means) or soft EM (sampled)"})
    codebook_size: int = field(default=4096, metadata={"help": "K codes per slice (paper: 2^12)"})
    codebook_slices: int = field(default=1, metadata={"help": "H: decomposed VQ with H codebooks over slices"})
    num_samples: int = field(default=10, metadata={"help": "m: soft-EM samples per latent (paper: 10)"})
    softmax_temperature: float = field(default=1.0, metadata={"help": "tau in softmax(-||z - e||^2 / tau)"})
    codebook_decay: float = field(default=0.999, metadata={"help": "EMA decay of codebook counts and sums "
                                                                    "(not --ema-decay: that is fairseq's model EMA)"})
    codebook_eps: float = field(default=1e-5, metadata={"help": "Laplace smoothing of the EMA counts"})
    beta: float = field(default=0.25, metadata={"help": "commitment loss weight"})
    # Both on by default: with random N(0, 1) codes nearly every latent picks the same few codes from the first step.
    # results/codebook_usage_bible.txt (3k Bible pairs, 512 codes, 120 updates): usage perplexity 3.9 with random
    # codes, 29.7 with k-means init, 157 with k-means init + reseeding; reconstruction loss 3.71 / 3.65 / 3.60.
    # --no-kmeans-init --no-reseed-dead-codes restore the paper's setting. (Negative names on purpose: fairseq turns
    # a boolean field that defaults to True into a flag that sets it to False, so `--kmeans-init` would switch off.)
    no_kmeans_init: bool = field(default=False, metadata={
        "help": "start from random codes instead of k-means on the first batch (the paper's setting)"})
    no_reseed_dead_codes: bool = field(default=False, metadata={
        "help": "never move dead codes onto encoder outputs (the paper's setting)"})
