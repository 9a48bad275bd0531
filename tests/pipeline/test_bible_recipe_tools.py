"""recipes/bible_en_de: export_weights.py (fp16 chunks, --inference-only) and warm_start.py (an inference-only
export made trainable again), on a tiny real checkpoint."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from tests.fixtures_fairseq import nat_train_args, run_fairseq

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "bible_en_de"
CODEBOOK = "bottleneck.codebook."


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"bible_recipe_{name}", RECIPE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


export_weights = load_script("export_weights")
warm_start = load_script("warm_start")
widen_slices = load_script("widen_slices")


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


@pytest.fixture(scope="module")
def inference_export(tiny_checkpoints, tmp_path_factory) -> Path:
    """The tiny NAT, packed with --inference-only and unpacked again."""
    folder = tmp_path_factory.mktemp("export")
    parts = export_weights.pack(tiny_checkpoints.nat, folder / "nat", chunk_mb=1, inference_only=True)
    assert parts and all(p.stat().st_size <= 1024 * 1024 for p in parts)
    export_weights.unpack(folder / "nat", folder / "nat.pt")
    return folder / "nat.pt"


def test_inference_only_export_keeps_what_translation_uses(tiny_checkpoints, inference_export):
    original, exported = weights(tiny_checkpoints.nat), weights(inference_export)
    assert exported.keys() == original.keys()
    for key, value in original.items():
        if key.startswith(export_weights.TRAINING_ONLY_PREFIXES):
            assert not exported[key].any(), key  # left out: comes back as zeros
        elif value.is_floating_point():
            assert exported[key].dtype == value.dtype
            torch.testing.assert_close(exported[key], value.half().float(), rtol=0, atol=0)  # fp16, back to fp32
        else:
            assert torch.equal(exported[key], value), key


def test_rebuilt_ema_sums_hold_the_codes_still():
    """An EMA step that assigns nothing must leave every used code where it was."""
    from vqnat.quantization.codebook import EMACodebook

    book = EMACodebook(num_slices=2, codebook_size=5, slice_dim=3, decay=0.9, eps=1e-5)
    book.ema_count.copy_(torch.tensor([[3.0, 0.5, 1.0, 2.0, 0.25], [1.0, 1.0, 4.0, 0.5, 2.0]]))
    book.embedding.normal_()
    before = book.embedding.clone()
    book.ema_sum.copy_(warm_start.rebuilt_ema_sum(book.embedding, book.ema_count, book.eps))
    book._ema_step(torch.zeros(2, 5), torch.zeros(2, 5, 3))
    torch.testing.assert_close(book.embedding, before)
    # the same step from the zero sums an inference-only export carries would move every code to the origin
    book.ema_sum.zero_()
    book._ema_step(torch.zeros(2, 5), torch.zeros(2, 5, 3))
    assert not book.embedding.any()


@pytest.mark.parametrize("codebook", ["keep", "reinit"])
def test_warm_start_restores_a_trainable_checkpoint(tiny_checkpoints, inference_export, tmp_path, codebook):
    out = tmp_path / "warm.pt"
    count = warm_start.warm_start(inference_export, tiny_checkpoints.data_bin, out, codebook=codebook, seed=3)
    exported, warm = weights(inference_export), weights(out)
    relearned = [k for k in warm if k.startswith(warm_start.RELEARNED_PREFIXES)]
    assert count == len(relearned) > 0
    assert all(warm[k].any() for k in relearned if not k.endswith("bias"))  # fresh weights, not the zeros
    kept = [k for k in warm if not k.startswith((*warm_start.RELEARNED_PREFIXES, CODEBOOK))]
    assert all(torch.equal(warm[k], exported[k]) for k in kept)  # encoder, decoder, prior: trained weights
    if codebook == "keep":
        assert torch.equal(warm[CODEBOOK + "embedding"], exported[CODEBOOK + "embedding"])
        assert warm[CODEBOOK + "ema_sum"].any()
    else:
        assert not bool(warm[CODEBOOK + "initialized"])  # k-means on the first batch of the new autoencoder
        assert int(warm[CODEBOOK + "num_updates"]) == 0 and not warm[CODEBOOK + "ema_count"].any()
    # the same seed gives the same fresh autoencoder
    again = tmp_path / "again.pt"
    warm_start.warm_start(inference_export, tiny_checkpoints.data_bin, again, codebook=codebook, seed=3)
    assert all(torch.equal(weights(again)[k], warm[k]) for k in relearned)


def test_fairseq_train_continues_from_a_warm_start(tiny_checkpoints, inference_export, tmp_path):
    out = tmp_path / "warm.pt"
    warm_start.warm_start(inference_export, tiny_checkpoints.data_bin, out)
    key = "decoder.layers.0.linear1.weight"
    state = torch.load(out, map_location="cpu", weights_only=False)
    state["model"][key].fill_(0.5)  # a value no initialisation would give
    torch.save(state, out)
    save = tmp_path / "continued"
    log = run_fairseq("train", *nat_train_args(tiny_checkpoints.data_bin, save, max_update=2),
                      "--finetune-from-model", str(out))
    assert "loading pretrained model" in log
    assert "num_updates=2" in log or "num_updates 2" in log
    continued = weights(save / "checkpoint_last.pt")
    assert bool(continued[CODEBOOK + "initialized"])  # k-means ran on the first batch
    # training started from the warm checkpoint's weights: two Adam steps at lr 1e-3 move a weight by about 2e-3
    assert (continued[key] - 0.5).abs().max() < 5e-3


@pytest.fixture(scope="module")
def widened(tiny_checkpoints, tmp_path_factory) -> Path:
    """The tiny NAT (one slice of 64 codes, 32 dimensions) widened to two slices."""
    out = tmp_path_factory.mktemp("widen") / "h2.pt"
    widen_slices.widen_checkpoint(tiny_checkpoints.nat, out, slices=2)
    return out


def test_widened_model_decodes_exactly_as_before(tiny_checkpoints, widened):
    from fairseq.data import data_utils

    from vqnat.inference import Translator

    old, new = (Translator.load(path, trust_checkpoint=True).model.eval() for path in (tiny_checkpoints.nat, widened))
    assert (old.cfg.codebook_slices, new.cfg.codebook_slices) == (1, 2)
    assert new.bottleneck.codebook.embedding.shape == (2, 64, 16)
    test = data_utils.load_indexed_dataset(str(tiny_checkpoints.data_bin / "test.en-de.en"), None)
    sources = [test[i] for i in range(len(test))]
    src_tokens = data_utils.collate_tokens(sources, old.src_dict.pad())
    src_lengths = torch.tensor([len(s) for s in sources])
    with torch.no_grad():
        before, after = old.translate(src_tokens, src_lengths), new.translate(src_tokens, src_lengths)
    assert torch.equal(after.codes, before.codes.expand_as(after.codes))  # (k, k) wherever the old prior chose k
    assert before.codes.unique().numel() > 1  # the check above is not about one constant code
    assert torch.equal(after.tokens, before.tokens)
    torch.testing.assert_close(after.log_probs, before.log_probs)


def test_widened_codebook_quantizes_at_least_as_closely(tiny_checkpoints, widened):
    from vqnat.inference import Translator

    old, new = (Translator.load(path, trust_checkpoint=True).model.eval().bottleneck
                for path in (tiny_checkpoints.nat, widened))
    z = torch.randn(500, 32)
    for code in range(64):  # the tuple (k, k) looks up exactly the old code k
        torch.testing.assert_close(new.codebook.lookup(torch.tensor([[code, code]])).reshape(32),
                                   old.codebook.embedding[0, code])
    error_old = (old(z).quantized - z).pow(2).sum(-1)
    error_new = (new(z).quantized - z).pow(2).sum(-1)
    assert bool((error_new <= error_old + 1e-5).all()) and float(error_new.mean()) < float(error_old.mean())


def test_widen_refuses_what_it_cannot_widen(tiny_checkpoints, widened, inference_export, tmp_path):
    with pytest.raises(SystemExit, match="already has 2 codebook slices"):
        widen_slices.widen_checkpoint(widened, tmp_path / "h4.pt", slices=2)
    with pytest.raises(SystemExit, match="divide the model dimension 32"):
        widen_slices.widen_checkpoint(tiny_checkpoints.nat, tmp_path / "h3.pt", slices=3)
    with pytest.raises(SystemExit, match="inference-only"):
        widen_slices.widen_checkpoint(inference_export, tmp_path / "x.pt", slices=2)


def test_fairseq_train_continues_a_widened_model(tiny_checkpoints, widened, tmp_path):
    save = tmp_path / "continued"
    log = run_fairseq("train", *nat_train_args(tiny_checkpoints.data_bin, save, max_update=2),
                      "--codebook-slices", "2", "--finetune-from-model", str(widened))
    assert "loading pretrained model" in log
    assert "num_updates=2" in log or "num_updates 2" in log
    continued = weights(save / "checkpoint_last.pt")
    before = weights(widened)
    assert continued[CODEBOOK + "embedding"].shape == (2, 64, 16)
    # two Adam steps at lr 1e-3 from the widened weights, not from a fresh initialisation
    assert (continued["prior_out.weight"] - before["prior_out.weight"]).abs().max() < 5e-3


def test_learning_curve_finds_interval_checkpoints_by_updates(tiny_checkpoints, tmp_path):
    curve = load_script("learning_curve")
    updates = curve.checkpoint_updates(tiny_checkpoints.nat)  # vqnat.pipeline.average.checkpoint_updates
    assert updates == 6  # the tiny NAT trains for 6 updates
    for name in ("checkpoint_1_4.pt", "checkpoint_2_12.pt", "checkpoint_last.pt", "checkpoint_best.pt"):
        (tmp_path / name).symlink_to(tiny_checkpoints.nat)
    found = curve.find_checkpoints(tmp_path)
    # interval checkpoints by the updates in their names, the last one by its own count; best is not a point
    assert [(u, p.name) for u, p in found] == [(4, "checkpoint_1_4.pt"), (6, "checkpoint_last.pt"),
                                               (12, "checkpoint_2_12.pt")]
    with pytest.raises(SystemExit, match="no checkpoint"):
        curve.find_checkpoints(tmp_path / "empty")


def test_latent_ablation_replaces_codes_without_information():
    ablation = load_script("latent_ablation")
    codes = torch.tensor([[[1], [2]], [[3], [3]], [[3], [5]]])  # (B=3, L=2, H=1)
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(ablation.replaced_codes(codes, "prior", 8, generator), codes)
    shuffled = ablation.replaced_codes(codes, "shuffled", 8, generator)
    assert sorted(map(tuple, shuffled.flatten(1).tolist())) == sorted(map(tuple, codes.flatten(1).tolist()))
    random = ablation.replaced_codes(codes, "random", 8, generator)
    assert random.shape == codes.shape and int(random.min()) >= 0 and int(random.max()) < 8
    assert torch.equal(ablation.replaced_codes(codes, "constant", 8, generator), torch.full_like(codes, 3))
    with pytest.raises(ValueError, match="unknown variant"):
        ablation.replaced_codes(codes, "reversed", 8, generator)


def test_latent_ablation_oracle_decodes_each_sentence_from_its_own_target(tiny_checkpoints, inference_export):
    from tests.fixtures_fairseq import genesis_pairs
    from vqnat.inference import Translator

    ablation = load_script("latent_ablation")
    translator = Translator.load(tiny_checkpoints.nat, data_dir=tiny_checkpoints.data_bin)
    assert ablation.has_autoencoder(translator.model)
    assert not ablation.has_autoencoder(Translator.load(inference_export, data_dir=tiny_checkpoints.data_bin,
                                                        trust_checkpoint=True).model)
    pairs = genesis_pairs(6)[1:6]  # different lengths: the batch is padded on both sides
    sources, targets = [s for s, _ in pairs], [t for _, t in pairs]
    together = ablation.decode_with_target_codes(translator, sources, targets, batch_size=5)
    alone = [ablation.decode_with_target_codes(translator, [s], [t], batch_size=1)[0] for s, t in pairs]
    assert together == alone and len(together) == 5 and all(together)


def test_gpu_finetune_init_forgets_its_training_time(tiny_checkpoints, inference_export, tmp_path):
    finetune = load_script("gpu_finetune")
    state = torch.load(tiny_checkpoints.nat, map_location="cpu", weights_only=False)
    assert state["extra_state"]["previous_training_time"] > 0
    export_weights.pack(tiny_checkpoints.nat, tmp_path / "full", chunk_mb=1)  # full: autoencoder included
    for init in (tiny_checkpoints.nat, tmp_path / "full"):
        work = tmp_path / f"work_{init.name}"
        work.mkdir()
        ready = torch.load(finetune.prepare_init(init, work), map_location="cpu", weights_only=False)
        assert ready["extra_state"]["previous_training_time"] == 0.0 and ready["last_optimizer_state"] is None
        assert ready["model"].keys() == state["model"].keys()
    with pytest.raises(SystemExit, match="inference-only"):
        finetune.prepare_init(inference_export, tmp_path)


def test_gpu_finetune_variant_arguments_parse_as_fairseq_reads_them(tiny_checkpoints, tmp_path):
    from fairseq import options

    finetune = load_script("gpu_finetune")
    init = tmp_path / "init.pt"
    args = finetune.variant_args("d1_prior3", tiny_checkpoints.data_bin, tmp_path / "save", init, hours=0.1,
                                 interval=500, max_tokens=8192, lr=7e-4, warmup=300, cpu=True)
    parsed = options.parse_args_and_arch(options.get_training_parser(), input_args=[str(a) for a in args])
    assert parsed.prior_dropout == 0.3 and parsed.dropout == 0.1
    assert parsed.finetune_from_model == str(init) and parsed.stop_time_hours == 0.1
    assert parsed.save_interval_updates == 500 and parsed.keep_interval_updates == 100  # the last one given wins
    wide = finetune.variant_args("d3_16k", tiny_checkpoints.data_bin, tmp_path / "save", init, hours=0.1,
                                 interval=500, max_tokens=8192, lr=7e-4, warmup=300, cpu=True)
    parsed = options.parse_args_and_arch(options.get_training_parser(), input_args=[str(a) for a in wide])
    assert parsed.max_tokens == 16384 and parsed.lr == [1e-3]
    assert getattr(parsed, "prior_dropout", None) is None  # fairseq leaves unset optional fields out
    wider = finetune.variant_args("d1_prior3_h2", tiny_checkpoints.data_bin, tmp_path / "save", init, hours=0.1,
                                  interval=500, max_tokens=8192, lr=7e-4, warmup=300, cpu=True)
    parsed = options.parse_args_and_arch(options.get_training_parser(), input_args=[str(a) for a in wider])
    assert parsed.codebook_slices == 2 and parsed.prior_dropout == 0.3


def test_gpu_finetune_widens_the_init_for_wider_variants(tiny_checkpoints, widened, tmp_path):
    finetune = load_script("gpu_finetune")
    inits = finetune.prepare_inits(tiny_checkpoints.nat, {1, 2}, tmp_path)
    assert sorted(inits) == [1, 2]
    assert [widen_slices.codebook_slices(inits[h]) for h in (1, 2)] == [1, 2]
    again = tmp_path / "again"
    again.mkdir()
    assert list(finetune.prepare_inits(widened, {2}, again)) == [2]  # a widened init serves its own width
    with pytest.raises(SystemExit, match="only a one-slice model can be widened"):
        finetune.prepare_inits(widened, {1, 4}, again)


def test_gpu_pipeline_variants_parse_as_fairseq_reads_them(tiny_checkpoints, tmp_path):
    from fairseq import options

    from vqnat.pipeline.presets import TrainBudget, nat_train_args

    pipeline = load_script("gpu_pipeline")
    parsed_by_name = {}
    for name, (bottleneck, length_rule, extra) in pipeline.NAT_VARIANTS.items():
        args = nat_train_args(tiny_checkpoints.data_bin, tmp_path / name, "vqnat_lt_cpu", bottleneck, TrainBudget(),
                              extra=extra, length_rule=length_rule)
        parsed = options.parse_args_and_arch(options.get_training_parser(), input_args=[str(a) for a in args])
        assert parsed.bottleneck == bottleneck and bool(getattr(parsed, "length_predictor", False)) == (
            length_rule == "predictor"), name
        parsed_by_name[name] = parsed
    # The variants' own options reach fairseq (without them the arch preset fills in 1,024 codes in one slice).
    assert parsed_by_name["soft_lenpred_k4096"].codebook_size == 4096
    assert parsed_by_name["soft_lenpred_h2"].codebook_slices == 2
    assert getattr(parsed_by_name["soft_lenpred"], "codebook_size", None) != 4096


def test_export_stores_tied_weights_once_even_as_separate_copies(tiny_checkpoints, tmp_path):
    """A GPU-saved checkpoint holds each tied embedding as its own copy; the export must not store it three times."""
    state = torch.load(tiny_checkpoints.nat, map_location="cpu", weights_only=False)
    state["model"] = {k: v.clone() for k, v in state["model"].items()}  # no storage shared any more
    copies = tmp_path / "copies.pt"
    torch.save(state, copies)
    shared_size = sum(p.stat().st_size for p in export_weights.pack(tiny_checkpoints.nat, tmp_path / "a", 1))
    copies_size = sum(p.stat().st_size for p in export_weights.pack(copies, tmp_path / "b", 1))
    assert copies_size < shared_size * 1.05
    export_weights.unpack(tmp_path / "b", tmp_path / "b.pt")
    for key, value in weights(tmp_path / "b.pt").items():
        expected = state["model"][key]
        assert torch.equal(value, expected.half().float() if expected.is_floating_point() else expected), key


def test_learning_curve_plots_compared_runs_in_one_figure(tmp_path, monkeypatch):
    curve = load_script("learning_curve")
    import matplotlib.axes

    drawn = []
    original = matplotlib.axes.Axes.plot
    monkeypatch.setattr(matplotlib.axes.Axes, "plot",
                        lambda self, *a, **k: drawn.append((k["label"], k["linestyle"])) or original(self, *a, **k))
    rows = [{"updates": u, "bleu": {"valid": b, "test": b + 0.5}} for u, b in ((300, 13.0), (600, 14.0))]
    curve.plot_curve([("two slices", rows), ("one slice", rows[:1])], tmp_path / "c.png", 18.38, "teacher")
    assert drawn == [("two slices, valid", "-"), ("two slices, test", "-"),
                     ("one slice, valid", "--"), ("one slice, test", "--")]
    assert (tmp_path / "c.png").stat().st_size > 0


def test_refit_trains_only_its_stage_and_keeps_the_best_valid_state(tiny_checkpoints):
    from vqnat.inference import Translator

    refit = load_script("refit")
    torch.manual_seed(0)
    translator = Translator.load(tiny_checkpoints.nat, data_dir=tiny_checkpoints.data_bin)
    model = translator.model
    translator.task.load_dataset("train")
    batches = refit.cache_batches(model, translator.task, translator.task.dataset("train"), max_tokens=512, seed=1)
    assert len(batches) > 1 and sum(len(b.codes) for b in batches) == 120

    start = {name: t.clone() for name, t in model.state_dict().items()}
    scores = iter({"valid_bleu": v, "report_bleu": -v} for v in [1.0, 3.0, 2.0, 0.0])  # start, epochs 1-3
    log: list[dict] = []
    best = refit.run_stage("prior", model, batches, epochs=3, lr=3e-3, smoothing=0.1, seed=1,
                           evaluate=lambda: next(scores), log=log)
    prior_names = {n for n, _ in model.named_parameters() if n.startswith(("prior_embed.", "prior.", "prior_out."))}
    after = model.state_dict()
    for name, value in start.items():  # the encoder and embeddings stay frozen, so the cache stays exact
        changed = not torch.equal(value, after[name])
        assert changed == (name in prior_names), name
    assert [row["epoch"] for row in log] == [0, 1, 2, 3]
    assert [row["report_bleu"] for row in log] == [-1.0, -3.0, -2.0, -0.0]
    assert log[3]["train_loss"] < log[1]["train_loss"]  # the prior fits its cached codes
    assert not all(torch.equal(best[n], after[n]) for n in prior_names)  # best = epoch 1, not the last
    assert all(torch.equal(best[n], start[n]) for n in start if n not in prior_names)

    model.load_state_dict(best)
    before_decoder = {name: t.clone() for name, t in model.state_dict().items()}
    scores = iter([{"valid_bleu": 0.0}, {"valid_bleu": 1.0}])
    refit.run_stage("decoder", model, batches, epochs=1, lr=1e-3, smoothing=0.1, seed=1,
                    evaluate=lambda: next(scores), log=log)
    for name, value in before_decoder.items():
        changed = not torch.equal(value, model.state_dict()[name])
        assert changed == name.startswith(("decompress.", "decoder.")), name


def test_refit_extra_text_pairs_are_indexed_as_the_binarized_data(tiny_checkpoints):
    from tests.fixtures_fairseq import genesis_pairs
    from vqnat.inference import Translator

    refit = load_script("refit")
    translator = Translator.load(tiny_checkpoints.nat, data_dir=tiny_checkpoints.data_bin)
    translator.task.load_dataset("train")
    binarized = translator.task.dataset("train")
    pairs = genesis_pairs()[:5]
    extra = refit.text_pairs_dataset(translator, [s for s, _ in pairs], [t for _, t in pairs])
    assert len(extra) == 5
    for i in range(5):
        assert torch.equal(extra[i]["source"], binarized[i]["source"])
        assert torch.equal(extra[i]["target"], binarized[i]["target"])
    with pytest.raises(SystemExit, match="2 extra sources but 1 extra targets"):
        refit.text_pairs_dataset(translator, ["a", "b"], ["c"])
