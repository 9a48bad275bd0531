"""fairseq-preprocess -> fairseq-train --user-dir -> fairseq-generate, and loading the checkpoint in Python."""

from __future__ import annotations

import re

import pytest
import torch

from tests.fixtures_fairseq import run_fairseq
from vqnat.checkpoint import mark_own_save_dir
from vqnat.pipeline.fairseq_run import USER_DIR

NUM_TEST = 11  # not a multiple of the batch size: the last partial batch must not be dropped


@pytest.fixture(scope="module")
def trained(tmp_path_factory, real_pairs):
    work = tmp_path_factory.mktemp("fairseq")
    splits = {"train": real_pairs[:120], "valid": real_pairs[120:140], "test": real_pairs[140:140 + NUM_TEST]}
    for split, pairs in splits.items():
        (work / f"{split}.en").write_text("".join(s + "\n" for s, _ in pairs))
        (work / f"{split}.de").write_text("".join(t + "\n" for _, t in pairs))
    data = work / "data-bin"
    run_fairseq("preprocess", "--source-lang", "en", "--target-lang", "de", "--trainpref", str(work / "train"),
                "--validpref", str(work / "valid"), "--testpref", str(work / "test"), "--destdir", str(data),
                "--joined-dictionary", "--workers", "1")
    save = work / "checkpoints"
    mark_own_save_dir(save)  # vqnat's own training folder: its checkpoints load without trust_checkpoint
    log = run_fairseq(
        "train", str(data), "--user-dir", USER_DIR, "--task", "vqnat_translation", "--arch", "vqnat_lt_tiny",
        "--criterion", "vqnat_latent_transformer_loss", "--bottleneck", "soft", "--num-samples", "3",
        "--codebook-decay", "0.95", "--softmax-temperature", "2.0", "--dropout", "0.1", "--prior-dropout", "0.3",
        "--optimizer", "adam", "--lr", "1e-3", "--max-tokens", "1024", "--max-update", "6",
        "--required-batch-size-multiple", "1", "--save-dir", str(save), "--no-epoch-checkpoints",
        "--log-format", "simple", "--log-interval", "1", "--seed", "1", "--num-workers", "0", "--cpu")
    return data, save / "checkpoint_last.pt", log


@pytest.fixture(scope="module")
def teacher(trained, tmp_path_factory):
    """A tiny autoregressive fairseq transformer on the same data (a stand-in for the teacher)."""
    data = trained[0]
    save = tmp_path_factory.mktemp("teacher")
    mark_own_save_dir(save)
    run_fairseq(
        "train", str(data), "--task", "translation", "--arch", "transformer", "--encoder-layers", "1",
        "--decoder-layers", "1", "--encoder-embed-dim", "32", "--decoder-embed-dim", "32",
        "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64", "--encoder-attention-heads", "2",
        "--decoder-attention-heads", "2", "--share-all-embeddings", "--optimizer", "adam", "--lr", "1e-3",
        "--max-tokens", "1024", "--max-update", "3", "--required-batch-size-multiple", "1",
        "--save-dir", str(save), "--no-epoch-checkpoints", "--seed", "1", "--num-workers", "0", "--cpu")
    return save / "checkpoint_last.pt"


def test_train_logs_every_named_term(trained):
    _, checkpoint, log = trained
    assert checkpoint.exists()
    for name in ("recon_loss", "prior_loss", "commitment", "token_accuracy", "prior_accuracy", "perplexity",
                 "dead_fraction"):
        assert re.search(rf"\b{name} [0-9.]+", log), f"{name} missing from fairseq-train output"


def test_generate_translates_every_sentence(trained):
    data, checkpoint, _ = trained
    out = run_fairseq("generate", str(data), "--user-dir", USER_DIR, "--task", "vqnat_translation",
                      "--path", str(checkpoint), "--gen-subset", "test", "--batch-size", "4",
                      "--required-batch-size-multiple", "1", "--scoring", "sacrebleu", "--cpu")
    ids = sorted(int(m) for m in re.findall(r"^H-(\d+)\t", out, flags=re.M))
    assert ids == list(range(NUM_TEST))
    assert re.search(r"BLEU", out)


def test_generate_with_latent_beam_returns_the_nbest_candidates(trained):
    data, checkpoint, _ = trained
    out = run_fairseq("generate", str(data), "--user-dir", USER_DIR, "--task", "vqnat_translation",
                      "--path", str(checkpoint), "--gen-subset", "test", "--batch-size", "4", "--latent-beam", "3",
                      "--nbest", "3", "--required-batch-size-multiple", "1", "--scoring", "sacrebleu", "--cpu")
    ids = [int(m) for m in re.findall(r"^H-(\d+)\t", out, flags=re.M)]
    assert sorted(set(ids)) == list(range(NUM_TEST)) and len(ids) == 3 * NUM_TEST


def test_noisy_parallel_decoding_picks_the_teachers_favourite(trained, teacher, real_pairs):
    from vqnat.inference import DecodingOptions, Translator
    from vqnat.rescoring import teacher_scores

    data, checkpoint, _ = trained
    sources = [s for s, _ in real_pairs[140:146]]
    npd = Translator.load(checkpoint, data, options=DecodingOptions(latent_beam=4), rescorer=teacher)
    assert npd.describe()["rescorer"] == str(teacher)
    plain = Translator.load(checkpoint, data, options=DecodingOptions(latent_beam=4))
    batch = [npd.encode(s) for s in sources]
    sample = _sample(npd, batch)
    rescored = npd.generator.generate([npd.model], sample)
    by_prior = plain.generator.generate([plain.model], sample)
    for row, prior_row in zip(rescored, by_prior, strict=True):
        assert len(row) == 4
        assert [h["score"] for h in row] == sorted((h["score"] for h in row), reverse=True)
        # Same candidates, reordered: the teacher's choice is one of the prior's n best.
        assert sorted(tuple(h["tokens"].tolist()) for h in row) == sorted(tuple(h["tokens"].tolist())
                                                                          for h in prior_row)
    # Each score is the teacher's mean log-probability, computed here one prefix at a time.
    hyp = rescored[0][0]["tokens"]
    src = sample["net_input"]["src_tokens"][:1]
    model, eos = npd.rescorer.model, npd.tgt_dict.eos()
    total = 0.0
    for t in range(len(hyp)):
        previous = torch.cat([hyp.new_tensor([eos]), hyp[:t]]).unsqueeze(0)
        log_probs = model.get_normalized_probs(model(src, sample["net_input"]["src_lengths"][:1], previous),
                                               log_probs=True)
        total += float(log_probs[0, -1, hyp[t]].detach())
    assert rescored[0][0]["score"] == pytest.approx(total / len(hyp), abs=1e-4)
    score = teacher_scores(model, src, sample["net_input"]["src_lengths"][:1], [hyp], npd.tgt_dict.pad(), eos)
    assert float(score[0]) == pytest.approx(total / len(hyp), abs=1e-4)
    assert len(npd.translate(sources)) == len(sources)
    with pytest.raises(ValueError, match="candidates"):
        Translator.load(checkpoint, data, rescorer=teacher)  # rescoring a single candidate is meaningless
    with pytest.raises(ValueError, match="autoregressive"):
        Translator.load(checkpoint, data, options=DecodingOptions(latent_beam=2), rescorer=checkpoint)
    with pytest.raises(ValueError, match="latent transformer only"):
        Translator.load(teacher, data, options=DecodingOptions(latent_beam=2))


def test_length_rule_can_be_overridden_at_inference(trained, real_pairs):
    import math

    from vqnat.inference import DecodingOptions, Translator

    data, checkpoint, _ = trained
    short = Translator.load(checkpoint, data, options=DecodingOptions(length_ratio=0.5, length_offset=0))
    long = Translator.load(checkpoint, data, options=DecodingOptions(length_ratio=3.0, length_offset=8))
    src = short.encode(real_pairs[140][0])
    budget = math.ceil(math.ceil(0.5 * len(src)) / 8) * 8  # T' = 8 ceil(ceil(0.5 |x|) / 8)
    (hypo,), = short.generator.generate([short.model], _sample(short, [src]))
    assert len(hypo["tokens"]) <= budget + 1  # at most T' positions, and an EOS
    assert long.describe()["length_ratio"] == 3.0 and short.describe()["length_offset"] == 0
    # the override is a setting of the Translator's calls, not of the model: its config stays as trained
    plain = Translator.load(checkpoint, data).model.cfg
    for overridden in (short, long):
        cfg = overridden.model.cfg
        assert (cfg.length_ratio, cfg.length_offset) == (plain.length_ratio, plain.length_offset)


def _sample(translator, batch):
    from fairseq.data import data_utils

    src = data_utils.collate_tokens(batch, translator.src_dict.pad(), translator.src_dict.eos(), left_pad=True)
    return {"net_input": {"src_tokens": src, "src_lengths": torch.tensor([len(t) for t in batch])}}


def test_checkpoint_loads_with_plugin_registered(trained):
    import torch
    from fairseq import checkpoint_utils

    from vqnat.checkpoint import allow_trusted_checkpoint_loading
    from vqnat.models.latent_transformer import LatentTransformerModel

    data, checkpoint, _ = trained
    allow_trusted_checkpoint_loading()
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(checkpoint)],
                                                                     arg_overrides={"data": str(data)})
    model = models[0].eval()
    assert isinstance(model, LatentTransformerModel)
    assert cfg.model.bottleneck == "soft" and model.cfg.num_samples == 3
    # Options reach the bottleneck (a name shared with a fairseq option would silently take fairseq's value).
    assert model.bottleneck.codebook.decay == 0.95 and model.bottleneck.temperature == 2.0
    prior_rates = {m.p for m in model.prior.modules() if isinstance(m, torch.nn.Dropout)}
    decoder_rates = {m.p for m in model.decoder.modules() if isinstance(m, torch.nn.Dropout)}
    assert prior_rates == {0.3} and model.prior.dropout.p == 0.3 and decoder_rates == {0.1}
    src = torch.tensor([[task.source_dictionary.index("God"), task.source_dictionary.eos()]])
    out = model.translate(src, torch.tensor([2]))
    assert out.tokens.shape[0] == 1 and int(out.lengths[0]) >= 1


@pytest.mark.parametrize("which", ["nat", "teacher"])
def test_translator_translates_lists_in_order(trained, teacher, real_pairs, which):
    from vqnat.inference import DecodingOptions, Translator

    checkpoint = trained[1] if which == "nat" else teacher
    translator = Translator.load(checkpoint, options=DecodingOptions(beam=2))
    assert translator.kind == ("nat" if which == "nat" else "autoregressive")
    sources = [s for s, _ in real_pairs[140:147]] + ["", "   ", "Zyzzyva unknownword God"]
    batched = translator.translate(sources, batch_size=3)
    assert len(batched) == len(sources)
    assert batched[7] == "" and batched[8] == ""
    assert all(isinstance(t, str) for t in batched)
    if which == "nat":
        one_by_one = [translator.translate([s])[0] for s in sources]
        assert one_by_one == batched  # batching, sorting and padding do not change any translation
    # (fairseq's beam search caps length by the batch's longest source, so an untrained teacher's endless
    # outputs legitimately differ in length between batch compositions.)
    info = translator.describe()
    assert info["parameters"] > 0 and info["kind"] == translator.kind


def test_translator_progress_bar_counts_translated_sentences(trained, real_pairs, monkeypatch):
    import vqnat.inference
    from vqnat.inference import Translator

    made = []

    class Bar:
        def __init__(self, total):
            self.total, self.n, self.closed = total, 0, False
            made.append(self)

        def update(self, n):
            self.n += n

        def close(self):
            self.closed = True

    monkeypatch.setattr(vqnat.inference, "_progress_bar", Bar)
    translator = Translator.load(trained[1])
    sources = [s for s, _ in real_pairs[140:147]] + [""]
    translator.translate(sources, batch_size=3)
    assert made == []  # off by default: nothing on the latency-critical path
    translator.translate(sources, batch_size=3, progress=True)
    assert len(made) == 1 and made[0].total == made[0].n == 7 and made[0].closed


def test_translator_encodes_as_fairseq_does(trained, real_pairs):
    from vqnat.inference import Translator

    data, checkpoint, _ = trained
    translator = Translator.load(checkpoint, data)
    for text in [real_pairs[0][0], "zzqx unknown   words , here", real_pairs[150][0]]:
        expected = translator.src_dict.encode_line(translator.tokenizer.encode(text), add_if_not_exist=False,
                                                   append_eos=True).long()
        assert torch.equal(translator.encode(text), expected), text


def test_translator_truncates_too_long_sources(trained, caplog):
    from vqnat.inference import Translator

    translator = Translator.load(trained[1])
    translator.max_source_positions = 8
    assert len(translator.encode("God " * 50)) == 8
    assert "truncated" in caplog.text
    assert isinstance(translator.translate(["God " * 50])[0], str)


def test_translator_rejects_what_it_cannot_load(trained, tmp_path):
    from vqnat.inference import Translator

    with pytest.raises(ValueError, match="not found"):
        Translator.load(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a readable fairseq checkpoint"):
        Translator.load(junk, trust_checkpoint=True)
    with pytest.raises(ValueError, match="no such folder"):
        Translator.load(trained[1], data_dir=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no dictionaries"):
        Translator.load(trained[1], data_dir=tmp_path / "empty")
    import torch

    from vqnat.checkpoint import read_checkpoint_as_saved

    moved = read_checkpoint_as_saved(trained[1], trust=True)
    moved["cfg"]["task"]["data"] = str(tmp_path / "moved-away")
    torch.save(moved, tmp_path / "moved.pt")
    with pytest.raises(ValueError, match="does not exist here"):
        Translator.load(tmp_path / "moved.pt", trust_checkpoint=True)
    state = read_checkpoint_as_saved(trained[1], trust=True)
    del state["model"]["bottleneck.codebook.num_updates"]  # as written by an older vqnat
    old = tmp_path / "old.pt"
    torch.save(state, old)
    with pytest.raises(ValueError, match="does not match this version"):
        Translator.load(old, trust_checkpoint=True)
    with pytest.raises(ValueError, match="list of sentences"):
        Translator.load(trained[1]).translate("a single string")


def test_translator_finds_the_data_bin_inside_a_prepared_folder(trained):
    """``--data-dir`` may name the ``vqnat prepare`` folder (it holds ``data-bin/``) as well as the data-bin."""
    from vqnat.inference import Translator

    data_bin = trained[0]
    sentences = ["In the beginning God created the heavens and the earth.", "And God said"]
    from_prepared = Translator.load(trained[1], data_dir=data_bin.parent).translate(sentences)
    assert from_prepared == Translator.load(trained[1], data_dir=data_bin).translate(sentences)


def test_model_options_do_not_shadow_fairseq_options():
    """fairseq flattens every config into one argparse namespace: a model field named like a fairseq option
    (e.g. ``ema_decay`` vs fairseq's --ema-decay) silently takes fairseq's value."""
    from fairseq import options
    from fairseq.tasks.translation import TranslationConfig

    from vqnat.models.latent_transformer import LatentTransformerConfig

    parser = options.get_training_parser()
    options.add_generation_args(parser)
    fairseq_names = {action.dest for action in parser._actions}
    fairseq_names |= {"max_source_positions", "max_target_positions"}  # the translation task's; shared on purpose
    shared_on_purpose = {"max_source_positions", "max_target_positions", "dropout", "_name"}
    clashes = (set(LatentTransformerConfig.__dataclass_fields__) & fairseq_names) - shared_on_purpose
    assert not clashes, clashes
    from vqnat.tasks.latent_translation import LatentTranslationConfig

    task_own = set(LatentTranslationConfig.__dataclass_fields__) - set(TranslationConfig.__dataclass_fields__)
    assert task_own and not task_own & fairseq_names, task_own & fairseq_names
