"""The Bible recipe's tools in the library, on a tiny real checkpoint: fp16 checkpoint chunks (also inference-only,
also as the earlier exporter wrote them) and the warm start (vqnat.checkpoint_tools), learning curves
(vqnat.pipeline.learning_curve); and the recipe scripts, thin wrappers over them."""

from __future__ import annotations

import ast
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.fixtures_fairseq import genesis_pairs, nat_train_args, run_fairseq
from vqnat.checkpoint import (
    CODEBOOK_PREFIX,
    INFERENCE_ONLY_KEY,
    UntrustedCheckpointError,
    read_checkpoint_as_saved,
)
from vqnat.checkpoint_tools import (
    LEFT_OUT_KEY,
    PACK_LEFT_OUT_PREFIXES,
    RELEARNED_PREFIXES,
    is_inference_only,
    pack_checkpoint,
    rebuilt_ema_sum,
    unpack_checkpoint,
    warm_start,
)
from vqnat.pipeline.learning_curve import (
    find_checkpoints,
    learning_curve,
    plot_curves,
    read_curve,
    select_checkpoint,
    write_curve,
)

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "bible_en_de"
SCRIPTS = sorted(RECIPE.glob("*.py"))


def saved(path: Path) -> dict:
    return read_checkpoint_as_saved(path, trust=True)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return saved(path)["model"]


@pytest.fixture(scope="module")
def inference_export(tiny_checkpoints, tmp_path_factory) -> Path:
    """The tiny NAT, packed with inference_only and unpacked again."""
    folder = tmp_path_factory.mktemp("export")
    parts = pack_checkpoint(tiny_checkpoints.nat, folder / "nat", chunk_mb=1, inference_only=True)
    assert parts and all(p.stat().st_size <= 1024 * 1024 for p in parts)
    unpack_checkpoint(folder / "nat", folder / "nat.pt", trust=True)
    return folder / "nat.pt"


def test_inference_only_export_keeps_what_translation_uses(tiny_checkpoints, inference_export):
    original, exported = weights(tiny_checkpoints.nat), weights(inference_export)
    assert exported.keys() == original.keys()
    for key, value in original.items():
        if key.startswith(PACK_LEFT_OUT_PREFIXES):
            assert not exported[key].any(), key  # left out: comes back as zeros
        elif value.is_floating_point():
            assert exported[key].dtype == value.dtype
            torch.testing.assert_close(exported[key], value.half().float(), rtol=0, atol=0)  # fp16, back to fp32
        else:
            assert torch.equal(exported[key], value), key
    state = saved(inference_export)
    assert state[INFERENCE_ONLY_KEY] is True and LEFT_OUT_KEY not in state and is_inference_only(state)
    assert state["last_optimizer_state"] is None
    assert not is_inference_only(saved(tiny_checkpoints.nat))


def test_full_pack_round_trip_can_resume(tiny_checkpoints, tmp_path):
    pack_checkpoint(tiny_checkpoints.nat, tmp_path / "full", chunk_mb=1)
    (tmp_path / "full.part7").write_bytes(b"stale")  # a chunk of an earlier, larger packing
    pack_checkpoint(tiny_checkpoints.nat, tmp_path / "full", chunk_mb=1)
    assert [p.name for p in sorted(tmp_path.glob("full.part*"))] == ["full.part0"]
    state = saved(unpack_checkpoint(tmp_path / "full", tmp_path / "full.pt", trust=True))
    original = saved(tiny_checkpoints.nat)
    assert not is_inference_only(state) and INFERENCE_ONLY_KEY not in state
    assert state.keys() == original.keys() and state["last_optimizer_state"] is None
    assert state["optimizer_history"] == original["optimizer_history"]
    for key, value in original["model"].items():
        expected = value.half().float() if value.is_floating_point() else value
        assert torch.equal(state["model"][key], expected), key


def test_unpacking_reads_only_trusted_chunks(tiny_checkpoints, tmp_path):
    pack_checkpoint(tiny_checkpoints.nat, tmp_path / "nat", chunk_mb=1)
    with pytest.raises(UntrustedCheckpointError, match="--trust-checkpoint"):
        unpack_checkpoint(tmp_path / "nat", tmp_path / "nat.pt")
    with pytest.raises(ValueError, match="no .*missing.part\\* files"):
        unpack_checkpoint(tmp_path / "missing", tmp_path / "x.pt", trust=True)


def earlier_chunks(checkpoint: Path, prefix: Path, inference_only: bool) -> dict:
    """Chunks laid out as the earlier exporter wrote them (no inference-only mark), split in two; their state."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)  # the file format itself
    state["last_optimizer_state"] = None
    model = state["model"]
    if inference_only:
        left_out = {k: v for k, v in model.items() if k.startswith(PACK_LEFT_OUT_PREFIXES)}
        state["dropped_for_inference"] = {k: (tuple(v.shape), v.dtype) for k, v in left_out.items()}
        model = {k: v for k, v in model.items() if k not in left_out}
    halves: dict[int, torch.Tensor] = {}  # tied weights (one storage) stored once
    state["model"] = {k: halves.setdefault(v.data_ptr(), v.half()) if v.is_floating_point() else v
                      for k, v in model.items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    prefix.with_name(prefix.name + ".part0").write_bytes(data[: len(data) // 2])
    prefix.with_name(prefix.name + ".part1").write_bytes(data[len(data) // 2 :])
    return state


def test_chunks_of_the_earlier_exporter_unpack_to_the_same_bytes(tiny_checkpoints, tmp_path):
    """Chunks without the inference-only mark (models packed before it existed) unpack as they did: the chunks'
    state itself, floats in fp32, tied weights shared, nothing added."""
    state = earlier_chunks(tiny_checkpoints.nat, tmp_path / "nat", inference_only=False)
    singles: dict[int, torch.Tensor] = {}
    state["model"] = {k: singles.setdefault(v.data_ptr(), v.float()) if v.is_floating_point() else v
                      for k, v in state["model"].items()}
    (tmp_path / "expected").mkdir()
    torch.save(state, tmp_path / "expected" / "nat.pt")  # the archive inside is named after the file
    unpacked = unpack_checkpoint(tmp_path / "nat", tmp_path / "nat.pt", trust=True)
    assert unpacked.read_bytes() == (tmp_path / "expected" / "nat.pt").read_bytes()


def test_earlier_inference_only_chunks_unpack_marked(tiny_checkpoints, tmp_path):
    earlier_chunks(tiny_checkpoints.nat, tmp_path / "nat", inference_only=True)
    state = saved(unpack_checkpoint(tmp_path / "nat", tmp_path / "nat.pt", trust=True))
    original = weights(tiny_checkpoints.nat)
    assert state[INFERENCE_ONLY_KEY] is True and LEFT_OUT_KEY not in state
    assert state["model"].keys() == original.keys()
    assert all(not state["model"][k].any() for k in original if k.startswith(PACK_LEFT_OUT_PREFIXES))
    # a checkpoint unpacked by the earlier exporter has no mark: its zero autoencoder still tells
    del state[INFERENCE_ONLY_KEY]
    assert is_inference_only(state)


def test_export_stores_tied_weights_once_even_as_separate_copies(tiny_checkpoints, tmp_path):
    """A GPU-saved checkpoint holds each tied embedding as its own copy; the chunks must not store it three times."""
    state = saved(tiny_checkpoints.nat)
    state["model"] = {k: v.clone() for k, v in state["model"].items()}  # no storage shared any more
    copies = tmp_path / "copies.pt"
    torch.save(state, copies)
    shared_size = sum(p.stat().st_size for p in pack_checkpoint(tiny_checkpoints.nat, tmp_path / "a", 1))
    copies_size = sum(p.stat().st_size for p in pack_checkpoint(copies, tmp_path / "b", 1, trust=True))
    assert copies_size < shared_size * 1.05
    unpack_checkpoint(tmp_path / "b", tmp_path / "b.pt", trust=True)
    for key, value in weights(tmp_path / "b.pt").items():
        expected = state["model"][key]
        assert torch.equal(value, expected.half().float() if expected.is_floating_point() else expected), key


def test_rebuilt_ema_sums_hold_the_codes_still():
    """An EMA step that assigns nothing must leave every used code where it was."""
    from vqnat.quantization.codebook import EMACodebook

    book = EMACodebook(num_slices=2, codebook_size=5, slice_dim=3, decay=0.9, eps=1e-5)
    book.ema_count.copy_(torch.tensor([[3.0, 0.5, 1.0, 2.0, 0.25], [1.0, 1.0, 4.0, 0.5, 2.0]]))
    book.embedding.normal_()
    before = book.embedding.clone()
    book.ema_sum.copy_(rebuilt_ema_sum(book.embedding, book.ema_count, book.eps))
    book._ema_step(torch.zeros(2, 5), torch.zeros(2, 5, 3))
    torch.testing.assert_close(book.embedding, before)
    # the same step from the zero sums an inference-only export carries would move every code to the origin
    book.ema_sum.zero_()
    book._ema_step(torch.zeros(2, 5), torch.zeros(2, 5, 3))
    assert not book.embedding.any()


@pytest.mark.parametrize("codebook", ["keep", "reinit"])
def test_warm_start_restores_a_trainable_checkpoint(tiny_checkpoints, inference_export, tmp_path, codebook):
    out = tmp_path / "warm.pt"
    count = warm_start(inference_export, tiny_checkpoints.data_bin, out, codebook=codebook, seed=3, trust=True)
    exported, state = weights(inference_export), saved(out)
    warm = state["model"]
    relearned = [k for k in warm if k.startswith(RELEARNED_PREFIXES)]
    assert count == len(relearned) > 0
    assert all(warm[k].any() for k in relearned if not k.endswith("bias"))  # fresh weights, not the zeros
    kept = [k for k in warm if not k.startswith((*RELEARNED_PREFIXES, CODEBOOK_PREFIX))]
    assert all(torch.equal(warm[k], exported[k]) for k in kept)  # encoder, decoder, prior: trained weights
    if codebook == "keep":
        assert torch.equal(warm[CODEBOOK_PREFIX + "embedding"], exported[CODEBOOK_PREFIX + "embedding"])
        assert warm[CODEBOOK_PREFIX + "ema_sum"].any()
    else:
        assert not bool(warm[CODEBOOK_PREFIX + "initialized"])  # k-means on the first batch of the new autoencoder
        assert int(warm[CODEBOOK_PREFIX + "num_updates"]) == 0 and not warm[CODEBOOK_PREFIX + "ema_count"].any()
    assert not is_inference_only(state) and INFERENCE_ONLY_KEY not in state  # trainable: no mark
    assert state["last_optimizer_state"] is None and state["extra_state"] == {}  # a new run's clock starts at 0
    # the same seed gives the same fresh autoencoder
    again = tmp_path / "again.pt"
    warm_start(inference_export, tiny_checkpoints.data_bin, again, codebook=codebook, seed=3, trust=True)
    assert all(torch.equal(weights(again)[k], warm[k]) for k in relearned)


def test_warm_start_refuses_chunks_and_untrusted_files(tiny_checkpoints, inference_export, tmp_path):
    with pytest.raises(UntrustedCheckpointError):
        warm_start(inference_export, tiny_checkpoints.data_bin, tmp_path / "w.pt")
    pack_checkpoint(inference_export, tmp_path / "nat", chunk_mb=1, trust=True)  # one chunk: a whole pickle
    with pytest.raises(ValueError, match="chunks' format"):
        warm_start(tmp_path / "nat.part0", tiny_checkpoints.data_bin, tmp_path / "w.pt", trust=True)
    with pytest.raises(ValueError, match="codebook must be one of"):
        warm_start(inference_export, tiny_checkpoints.data_bin, tmp_path / "w.pt", codebook="zero", trust=True)


def test_fairseq_train_continues_from_a_warm_start(tiny_checkpoints, inference_export, tmp_path):
    out = tmp_path / "warm.pt"
    warm_start(inference_export, tiny_checkpoints.data_bin, out, trust=True)
    key = "decoder.layers.0.linear1.weight"
    state = saved(out)
    state["model"][key].fill_(0.5)  # a value no initialisation would give
    torch.save(state, out)
    save = tmp_path / "continued"
    log = run_fairseq("train", *nat_train_args(tiny_checkpoints.data_bin, save, max_update=2),
                      "--finetune-from-model", str(out))
    assert "loading pretrained model" in log
    assert "num_updates=2" in log or "num_updates 2" in log
    continued = weights(save / "checkpoint_last.pt")
    assert bool(continued[CODEBOOK_PREFIX + "initialized"])  # k-means ran on the first batch
    # training started from the warm checkpoint's weights: two Adam steps at lr 1e-3 move a weight by about 2e-3
    assert (continued[key] - 0.5).abs().max() < 5e-3


def test_learning_curve_finds_interval_checkpoints_by_updates(tiny_checkpoints, tmp_path):
    for name in ("checkpoint_1_4.pt", "checkpoint_2_12.pt", "checkpoint_last.pt", "checkpoint_best.pt"):
        (tmp_path / name).symlink_to(tiny_checkpoints.nat)  # the tiny NAT trains for 6 updates
    found = find_checkpoints(tmp_path, trust=True)
    # interval checkpoints by the updates in their names, the last one by its own count; best is not a point
    assert [(u, p.name) for u, p in found] == [(4, "checkpoint_1_4.pt"), (6, "checkpoint_last.pt"),
                                               (12, "checkpoint_2_12.pt")]
    with pytest.raises(ValueError, match="no checkpoint"):
        find_checkpoints(tmp_path / "empty")


def test_learning_curve_selects_on_the_first_split():
    rows = [{"updates": u, "bleu": {"valid": v, "test": t}} for u, v, t in
            ((300, 13.0, 14.0), (600, 14.5, 13.5), (900, 14.5, 15.5), (1200, 14.0, 16.0))]
    assert select_checkpoint(rows, "valid")["updates"] == 600  # the first of equals; test's best is not chosen
    assert select_checkpoint(rows, "test")["updates"] == 1200


def test_learning_curve_scores_every_checkpoint_and_writes_its_report(tiny_checkpoints, tmp_path):
    prepared = tmp_path / "prepared"
    (prepared / "raw").mkdir(parents=True)
    (prepared / "prepare.json").write_text(json.dumps({"src_lang": "en", "tgt_lang": "de",
                                                       "data_bin": str(tiny_checkpoints.data_bin)}))
    pairs = genesis_pairs()  # as the tiny checkpoints' data: valid 120-139, test 140-150
    for split, rows in (("valid", pairs[120:140]), ("test", pairs[140:151])):
        (prepared / "raw" / f"{split}.en").write_text("".join(s + "\n" for s, _ in rows))
        (prepared / "raw" / f"{split}.de").write_text("".join(t + "\n" for _, t in rows))
    save = tmp_path / "save"
    save.mkdir()
    for name in ("checkpoint_1_3.pt", "checkpoint_last.pt"):
        (save / name).symlink_to(tiny_checkpoints.nat)
    report = learning_curve(save, prepared, reference_bleu=18.38, reference_label="teacher", label="tiny",
                            command="test", trust=True)
    assert [(row["updates"], row["checkpoint"]) for row in report["rows"]] == [(3, "checkpoint_1_3.pt"),
                                                                               (6, "checkpoint_last.pt")]
    assert all(set(row["bleu"]) == set(row["chrf"]) == {"valid", "test"} for row in report["rows"])
    assert report["rows"][0]["bleu"] == report["rows"][1]["bleu"]  # one model twice: equal scores
    assert report["selected"] == {"by": "best valid BLEU", **report["rows"][0]}  # the first of equals
    assert report["reference"] == {"label": "teacher", "bleu": 18.38} and "tok:13a" in report["bleu_signature"]
    plot = write_curve(report, tmp_path / "curve.json")
    assert plot.stat().st_size > 0 and read_curve(tmp_path / "curve.json") == ("tiny", report["rows"])


def test_learning_curve_plots_compared_runs_in_one_figure(tmp_path, monkeypatch):
    import matplotlib.axes

    drawn = []
    original = matplotlib.axes.Axes.plot
    monkeypatch.setattr(matplotlib.axes.Axes, "plot",
                        lambda self, *a, **k: drawn.append((k["label"], k["linestyle"])) or original(self, *a, **k))
    rows = [{"updates": u, "bleu": {"valid": b, "test": b + 0.5}} for u, b in ((300, 13.0), (600, 14.0))]
    plot_curves([("two slices", rows), ("one slice", rows[:1])], tmp_path / "c.png", 18.38, "teacher")
    assert drawn == [("two slices, valid", "-"), ("two slices, test", "-"),
                     ("one slice, valid", "--"), ("one slice, test", "--")]
    assert (tmp_path / "c.png").stat().st_size > 0


def test_recipe_scripts_are_thin_wrappers():
    """No sys.path hack (vqnat is installed), no imports between scripts: they call the library."""
    assert {p.stem for p in SCRIPTS} == {"export_weights", "gpu_pipeline", "learning_curve", "warm_start"}
    for path in SCRIPTS:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not {name for name in imported if name.startswith("recipes")}, path.name
        assert "sys.path" not in path.read_text(encoding="utf-8"), path.name


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_recipe_script_help_runs(script):
    result = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:") and f"recipes/bible_en_de/{script.name}" in result.stdout  # example


def test_gpu_pipeline_variants_parse_as_fairseq_reads_them(tiny_checkpoints, tmp_path):
    from fairseq import options

    prepared = tmp_path / "prepared"
    prepared.mkdir()
    (prepared / "prepare.json").write_text(json.dumps({"src_lang": "en", "tgt_lang": "de",
                                                       "data_bin": str(tiny_checkpoints.data_bin)}))
    variants = ["soft", "hard", "soft_lenpred", "hard_lenpred", "soft_ratio2", "soft_lenpred_k4096", "soft_lenpred_h2"]
    result = subprocess.run(
        [sys.executable, str(RECIPE / "gpu_pipeline.py"), str(prepared), str(tmp_path / "w"), str(tmp_path / "o"),
         "--distilled", str(prepared), "--variants", ",".join(variants), "--device", "cpu", "--print-jobs"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    jobs = json.loads(result.stdout)
    assert list(jobs) == ["deep_shallow", *(f"nat_{v}" for v in variants)]
    assert not (tmp_path / "w").exists()  # nothing trained
    parsed = {name: options.parse_args_and_arch(options.get_training_parser(), input_args=args)
              for name, args in jobs.items()}
    for name in variants:
        assert parsed[f"nat_{name}"].bottleneck == name.split("_")[0], name
        assert bool(getattr(parsed[f"nat_{name}"], "length_predictor", False)) == ("lenpred" in name), name
        assert parsed[f"nat_{name}"].prior_layers == 2
    # The variants' own options reach fairseq (without them the arch preset fills in 1,024 codes in one slice).
    assert parsed["nat_soft_lenpred_k4096"].codebook_size == 4096
    assert parsed["nat_soft_lenpred_h2"].codebook_slices == 2
    assert getattr(parsed["nat_soft_lenpred"], "codebook_size", None) != 4096
    assert parsed["nat_soft_ratio2"].length_ratio == 2.0
