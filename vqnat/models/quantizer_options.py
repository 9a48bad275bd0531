"""The bottleneck's options as fairseq options: :class:`~vqnat.quantization.QuantizerConfig`'s fields, declared there.

Both fairseq models' configs inherit :class:`QuantizerOptions`, so ``--bottleneck``, ``--codebook-size``,
``--num-samples``, ... have one name, one default and one help text in every model.
"""

from dataclasses import dataclass, field

from fairseq.dataclass import ChoiceEnum, FairseqDataclass

from vqnat.quantization import BOTTLENECKS, QuantizerConfig

BOTTLENECK_CHOICES = ChoiceEnum(list(BOTTLENECKS))


@dataclass
class QuantizerOptions(FairseqDataclass, QuantizerConfig):
    """:class:`QuantizerConfig` as a fairseq config (a base of each model's config)."""

    # The one field typed again: a ChoiceEnum gives --bottleneck its choices. Default and help are QuantizerConfig's.
    bottleneck: BOTTLENECK_CHOICES = field(
        default=QuantizerConfig.bottleneck, metadata=QuantizerConfig.__dataclass_fields__["bottleneck"].metadata)
