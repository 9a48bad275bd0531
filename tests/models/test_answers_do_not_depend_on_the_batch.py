"""A sentence translates the same alone as in a batch with a much longer sentence, for the teacher (greedy and
beam search: each sentence stops at its own length limit) and for the NAT (it decodes each sentence's own length).
"""

from __future__ import annotations

import pytest

from vqnat.inference import DecodingOptions, Translator


@pytest.fixture(scope="module")
def sentences() -> tuple[list[str], str]:
    from vqnat.data.bible import read_verse_pairs

    john = [pair.src for pair in read_verse_pairs(books=[43])[:12]]
    return john[:8], " ".join(john[:6])  # short ones, and one six verses long


@pytest.mark.parametrize(("model", "beam"), [("teacher", 1), ("teacher", 3), ("nat", 1)])
def test_a_sentence_translates_the_same_alone_and_next_to_a_long_one(tiny_checkpoints, sentences, model, beam):
    translator = Translator.load(getattr(tiny_checkpoints, model), options=DecodingOptions(beam=beam),
                                 trust_checkpoint=True)
    short, long = sentences
    alone = [translator.translate([text])[0] for text in short]
    batched = [translator.translate([text, long])[0] for text in short]
    assert batched == alone


def test_the_teacher_stops_each_sentence_at_its_own_limit(tiny_checkpoints, sentences):
    """An untrained teacher runs to its length limit: alone and batched, a sentence of n source tokens (EOS
    included) gets at most int(max_len_a * n + max_len_b) output tokens."""
    options = DecodingOptions(beam=1, max_len_a=0.5, max_len_b=2)
    translator = Translator.load(tiny_checkpoints.teacher, options=options, trust_checkpoint=True)
    short, long = sentences
    ids = [translator.encode(text) for text in short[:3]]
    hypos = translator.generator.generate([translator.model], _sample(translator, [*ids, translator.encode(long)]))
    for source, hypo in zip(ids, hypos, strict=False):
        produced = len(hypo[0]["tokens"]) - 1  # without the final EOS
        assert produced <= int(options.max_len_a * len(source) + options.max_len_b)


def _sample(translator: Translator, batch: list) -> dict:
    import torch
    from fairseq.data import data_utils

    tokens = data_utils.collate_tokens(batch, translator.src_dict.pad(), translator.src_dict.eos(), left_pad=True)
    return {"net_input": {"src_tokens": tokens, "src_lengths": torch.tensor([len(t) for t in batch])}}
