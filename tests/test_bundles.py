"""Model bundles (safetensors, no pickle) and the trust rule for pickled checkpoints."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from vqnat.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    UntrustedCheckpointError,
    bundle_to_checkpoint,
    default_model,
    export_bundle,
    is_own_checkpoint,
    mark_own_save_dir,
    read_bundle,
)
from vqnat.inference import DecodingOptions, Translator

SENTENCES = ["In the beginning God created the heavens and the earth .", "And God said , Let there be light .",
             "and the evening and the morning were the first day ."]
REPO = Path(__file__).resolve().parent.parent


def _translate(model: Path, data_bin: Path | None = None, **kwargs) -> list[str]:
    return Translator.load(model, data_dir=data_bin, **kwargs).translate(SENTENCES)


@pytest.mark.parametrize("role", ["nat", "teacher"])
def test_fp32_bundle_translates_exactly_as_its_checkpoint(tiny_checkpoints, tmp_path, role):
    checkpoint = tiny_checkpoints.nat if role == "nat" else tiny_checkpoints.teacher
    bundle = export_bundle(checkpoint, tmp_path / "bundle", dtype="float32")
    assert sorted(p.name for p in bundle.iterdir()) == ["README.md", "config.json", "dict.de.txt", "dict.en.txt",
                                                        "model.safetensors"]
    config = json.loads((bundle / CONFIG_FILE).read_text())
    assert config["kind"] == role and config["provenance"]["updates"] > 0
    assert _translate(bundle) == _translate(checkpoint, tiny_checkpoints.data_bin)


def test_fp16_bundle_stores_tied_weights_once_and_stays_within_tolerance(tiny_checkpoints, tmp_path):
    full = export_bundle(tiny_checkpoints.nat, tmp_path / "fp32", dtype="float32")
    half = export_bundle(tiny_checkpoints.nat, tmp_path / "fp16")
    config = json.loads((half / CONFIG_FILE).read_text())
    assert {"tgt_embed.weight", "output_projection.weight"} <= set(config["tied"])  # both share src_embed.weight
    assert (half / WEIGHTS_FILE).stat().st_size < 0.6 * (full / WEIGHTS_FILE).stat().st_size
    _, weights32 = read_bundle(full)
    _, weights16 = read_bundle(half)
    # The stated tolerance: fp16 storage keeps every weight within 2^-11 relative (+ fp16's smallest step).
    for name, value in weights32.items():
        if value.is_floating_point():
            assert torch.allclose(weights16[name], value, rtol=2**-11, atol=6e-8), name
    reference = _translate(full)
    same = sum(a == b for a, b in zip(_translate(half), reference, strict=True))
    assert same >= len(SENTENCES) - 1


def test_inference_only_bundle_translates_the_same_and_cannot_train(tiny_checkpoints, tmp_path):
    bundle = export_bundle(tiny_checkpoints.nat, tmp_path / "small", dtype="float32", inference_only=True)
    config = json.loads((bundle / CONFIG_FILE).read_text())
    assert config["inference_only"] and any(k.startswith("autoencoder.") for k in config["left_out"])
    _, weights = read_bundle(bundle)
    assert not any(k.startswith(("autoencoder.", "compress.")) for k in weights)
    assert _translate(bundle) == _translate(tiny_checkpoints.nat, tiny_checkpoints.data_bin)
    with pytest.raises(ValueError, match="inference-only"):
        bundle_to_checkpoint(bundle, tmp_path / "init.pt")
    with pytest.raises(ValueError, match="latent transformer"):
        export_bundle(tiny_checkpoints.teacher, tmp_path / "t", inference_only=True)
    with pytest.raises(ValueError, match="inference-only export"):  # refinement needs the autoencoder
        Translator.load(bundle, options=DecodingOptions(refine_steps=1))
    assert _translate(tiny_checkpoints.nat, tiny_checkpoints.data_bin, options=DecodingOptions(refine_steps=1))


def test_trainable_bundle_becomes_a_checkpoint_with_the_same_translations(tiny_checkpoints, tmp_path):
    bundle = export_bundle(tiny_checkpoints.nat, tmp_path / "bundle", dtype="float32")
    init = bundle_to_checkpoint(bundle, tmp_path / "run" / "init.pt")
    assert _translate(init, trust_checkpoint=True) == _translate(bundle)


def test_loading_a_bundle_never_unpickles(tiny_checkpoints, tmp_path, monkeypatch):
    bundle = export_bundle(tiny_checkpoints.teacher, tmp_path / "bundle")

    def refuse(*args, **kwargs):
        raise AssertionError("torch.load called while loading a bundle")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    assert len(_translate(bundle)) == len(SENTENCES)


class _Payload:
    """Unpickling this runs ``Path(marker).touch()``: what a hostile checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_with_a_payload_is_refused_and_its_payload_never_runs(tmp_path):
    from vqnat_cli.main import app

    marker = tmp_path / "payload-ran"
    evil = tmp_path / "downloaded" / "model.pt"
    evil.parent.mkdir()
    torch.save({"cfg": _Payload(marker), "model": {}}, evil)
    with pytest.raises(UntrustedCheckpointError, match="--trust-checkpoint"):
        Translator.load(evil)
    result = CliRunner().invoke(app, ["translate", "--model", str(evil)], input="Hello\n")
    assert result.exit_code == 1
    assert "pickled checkpoint" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not marker.exists()
    # With the flag the user vouches for it: then, and only then, the pickle is read (and its payload runs).
    with pytest.raises(ValueError):
        Translator.load(evil, trust_checkpoint=True)
    assert marker.exists()


def test_only_checkpoints_in_their_own_marked_folder_are_trusted(tiny_checkpoints, tmp_path):
    assert is_own_checkpoint(tiny_checkpoints.nat)
    copy = tmp_path / "elsewhere"
    shutil.copytree(tiny_checkpoints.nat.parent, copy)  # the marker travels, but names the original folder
    assert not is_own_checkpoint(copy / tiny_checkpoints.nat.name)
    with pytest.raises(UntrustedCheckpointError):
        Translator.load(copy / tiny_checkpoints.nat.name, data_dir=tiny_checkpoints.data_bin)
    mark_own_save_dir(copy)
    assert is_own_checkpoint(copy / tiny_checkpoints.nat.name)


def test_translate_without_model_uses_the_default_bundle(tiny_checkpoints, tmp_path, monkeypatch):
    from vqnat_cli.main import app

    export_bundle(tiny_checkpoints.nat, tmp_path / "models" / "bible-en-de-nat")
    monkeypatch.setenv("VQNAT_MODELS", str(tmp_path / "models"))
    assert default_model("nat") == tmp_path / "models" / "bible-en-de-nat"
    result = CliRunner().invoke(app, ["translate"], input="\n".join(SENTENCES) + "\n")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == _translate(default_model("nat"))
    monkeypatch.setenv("VQNAT_MODELS", str(tmp_path / "nowhere"))
    result = CliRunner().invoke(app, ["translate"], input="Hello\n")
    assert result.exit_code == 1 and "no default nat model" in result.output


def test_int8_quantizes_linear_layers_and_still_translates(tiny_checkpoints):
    for checkpoint in (tiny_checkpoints.nat, tiny_checkpoints.teacher):
        translator = Translator.load(checkpoint, data_dir=tiny_checkpoints.data_bin, int8=True)
        assert translator.int8
        assert all(isinstance(hyp, str) for hyp in translator.translate(SENTENCES))
    assert torch.backends.mha.get_fastpath_enabled()  # switched off only while an int8 model runs


@pytest.mark.skipif(not (REPO / "models" / "bible-en-de-nat" / CONFIG_FILE).is_file(), reason="no shipped models")
def test_the_shipped_models_translate_into_german():
    nat, teacher = (Translator.load(REPO / "models" / f"bible-en-de-{role}") for role in ("nat", "teacher"))
    for translator in (nat, teacher):
        (out,) = translator.translate(["In the beginning was the Word, and the Word was with God."])
        assert "Anfang" in out and "Wort" in out and "Gott" in out


def test_demo_translates_scores_and_times_the_given_bundles(tiny_checkpoints, tmp_path, monkeypatch):
    from vqnat_cli.main import app

    monkeypatch.chdir(tmp_path)  # the plot goes to work/demo/bench.png
    nat = export_bundle(tiny_checkpoints.nat, tmp_path / "nat")
    teacher = export_bundle(tiny_checkpoints.teacher, tmp_path / "teacher")
    result = CliRunner().invoke(app, ["demo", "--nat", str(nat), "--teacher", str(teacher), "--batch1-sentences",
                                      "2", "--limit", "20"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("teacher beam 4") for line in lines)
    assert sum(line.strip().startswith("EN ") for line in lines) == 3
    assert "Namespace(" not in result.output and "dictionary:" not in result.output
    assert (tmp_path / "work" / "demo" / "bench.png").is_file()


def _has_repeats(line: str) -> bool:
    tokens = line.split()
    return any(a == b for a, b in zip(tokens, tokens[1:], strict=False))


def test_a_bundle_carries_its_collapse_default_and_options_override_it(tiny_checkpoints, tmp_path):
    from vqnat.inference import DecodingOptions
    from vqnat.pipeline.export import export_model

    plain = export_model(tiny_checkpoints.nat, tmp_path / "plain", dtype="float32")
    assert plain["task"]["collapse_repeated_tokens"] is False
    config = export_model(tiny_checkpoints.nat, tmp_path / "collapsing", dtype="float32", collapse_repeats=True)
    assert config["task"]["collapse_repeated_tokens"] is True
    raw = _translate(tmp_path / "plain")
    assert any(map(_has_repeats, raw)), raw  # the tiny model repeats itself: the test can see the difference
    collapsed = _translate(tmp_path / "collapsing")
    assert not any(map(_has_repeats, collapsed)) and collapsed != raw
    assert _translate(tmp_path / "collapsing", options=DecodingOptions(collapse_repeated_tokens=False)) == raw
    assert _translate(tmp_path / "plain", options=DecodingOptions(collapse_repeated_tokens=True)) == collapsed
    with pytest.raises(ValueError, match="NAT decoding setting"):
        export_model(tiny_checkpoints.teacher, tmp_path / "teacher", collapse_repeats=True)
