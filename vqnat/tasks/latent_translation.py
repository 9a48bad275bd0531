"""The ``vqnat_translation`` task: fairseq's translation task whose generator decodes the latent transformer."""


from dataclasses import dataclass, field

from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask

from vqnat.generation import LatentTransformerGenerator

TASK_NAME = "vqnat_translation"


@dataclass
class LatentTranslationConfig(TranslationConfig):
    collapse_repeated_tokens: bool = field(
        default=False, metadata={"help": "at decoding, drop consecutive repeated tokens (a common NAT clean-up)"})
    latent_beam: int = field(
        default=1, metadata={"help": "at decoding, beam search over the latents with this many hypotheses (1 = "
                                     "greedy); with --nbest, the candidates best first by the prior's score"})


@register_task(TASK_NAME, dataclass=LatentTranslationConfig)
class LatentTranslationTask(TranslationTask):
    """Binarized parallel data as for ``--task translation``; decoding through the latent prior."""

    cfg: LatentTranslationConfig

    def build_generator(self, models, args, seq_gen_cls=None, extra_gen_cls_kwargs=None, **unused):
        from vqnat.models.latent_transformer import LatentTransformerModel

        if all(isinstance(m, LatentTransformerModel) for m in models):
            return LatentTransformerGenerator(self.target_dictionary,
                                              collapse_repeated_tokens=self.cfg.collapse_repeated_tokens,
                                              latent_beam=self.cfg.latent_beam)
        # Autoregressive models (e.g. the teacher) decode with fairseq's beam search as usual.
        return super().build_generator(models, args, seq_gen_cls=seq_gen_cls,
                                       extra_gen_cls_kwargs=extra_gen_cls_kwargs)
