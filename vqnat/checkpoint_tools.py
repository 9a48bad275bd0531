"""Part of :mod:`vqnat.checkpoint`: transformations of fairseq checkpoints (kept in their own file for length).

Every read goes through :mod:`vqnat.checkpoint` and its trust rule.

- **Packing** (:func:`pack_checkpoint`, :func:`unpack_checkpoint`): a checkpoint without its optimizer state, its
  floating tensors in fp16 (tied weights once), split into chunks ``PREFIX.part0, PREFIX.part1, ...`` of at most
  ``chunk_mb`` MiB, for moving it off a machine that only returns small files; unpacking joins the chunks into a
  loadable fp32 checkpoint. With ``inference_only`` (latent transformer) what translation never runs is left out
  (:data:`PACK_LEFT_OUT_PREFIXES`: the target autoencoder, the compressor, the codebook's EMA sums): the chunks
  record the left-out shapes (``dropped_for_inference``), unpacking gives those tensors back as zeros and marks the
  checkpoint with :data:`~vqnat.checkpoint.INFERENCE_ONLY_KEY`, so it translates exactly as the original but cannot
  resume training. Chunks written before that mark existed unpack to the same bytes as then.
- **Warm start** (:func:`warm_start`): an inference-only checkpoint made trainable again (a fresh autoencoder and
  compressor, the codebook re-set or kept), to continue its training with ``--finetune-from-model``.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from vqnat.checkpoint import (
    CODEBOOK_PREFIX,
    INFERENCE_ONLY_KEY,
    TRAINING_ONLY_PREFIXES,
    cast_weights,
    chunk_paths,
    drop_training_state,
    read_checkpoint_as_saved,
    read_checkpoint_chunks,
)

DEFAULT_CHUNK_MB = 15  # MiB per chunk
# Packed chunks keep the codebook's EMA counts (K floats per slice): warm_start(codebook="keep") rebuilds the
# EMA sums from them.
PACK_LEFT_OUT_PREFIXES = tuple(p for p in TRAINING_ONLY_PREFIXES if p != CODEBOOK_PREFIX + "ema_count")
LEFT_OUT_KEY = "dropped_for_inference"  # in packed chunks: {key: (shape, dtype)} of the tensors left out
# The modules a warm start initialises afresh: the training-only ones outside the codebook.
RELEARNED_PREFIXES = tuple(p for p in TRAINING_ONLY_PREFIXES if not p.startswith(CODEBOOK_PREFIX))
CODEBOOK_CHOICES = ("reinit", "keep")


def is_inference_only(state: dict[str, Any]) -> bool:
    """True for a fairseq checkpoint ``state`` (or packed chunks' state) whose training-only weights were left out.

    Read from the mark that packing writes (:data:`~vqnat.checkpoint.INFERENCE_ONLY_KEY`, or the chunks' list of
    left-out tensors). A checkpoint unpacked before the mark existed has neither: its left-out weight matrices came
    back as zeros, which a trained or freshly initialised autoencoder never is.
    """
    if INFERENCE_ONLY_KEY in state:
        return bool(state[INFERENCE_ONLY_KEY])
    if LEFT_OUT_KEY in state:
        return bool(state[LEFT_OUT_KEY])
    return any(k.startswith(RELEARNED_PREFIXES) and v.dim() > 1 and not v.any() for k, v in state["model"].items())


def pack_checkpoint(checkpoint: str | Path, prefix: str | Path, chunk_mb: int = DEFAULT_CHUNK_MB,
                    inference_only: bool = False, trust: bool = False) -> list[Path]:
    """Write ``checkpoint`` as fp16 chunks ``PREFIX.part0, ...`` (see the module docstring); returns their paths.

    A checkpoint that is inference-only already (:func:`is_inference_only`) is packed as such. Chunks of an earlier
    packing under the same prefix are removed first (unpacking joins every chunk it finds).
    """
    if chunk_mb < 1:
        raise ValueError(f"chunk_mb must be at least 1, got {chunk_mb}")
    state = drop_training_state(read_checkpoint_as_saved(checkpoint, trust))
    weights = state["model"]
    if inference_only or is_inference_only(state):
        left_out = {k: v for k, v in weights.items() if k.startswith(PACK_LEFT_OUT_PREFIXES)}
        state[LEFT_OUT_KEY] = {k: (tuple(v.shape), v.dtype) for k, v in left_out.items()}
        if left_out:
            state[INFERENCE_ONLY_KEY] = True
        weights = {k: v for k, v in weights.items() if k not in left_out}
    state["model"] = cast_weights(weights, torch.float16)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    for stale in chunk_paths(prefix):
        stale.unlink()
    size = chunk_mb * 1024 * 1024
    paths = []
    for start in range(0, len(data), size):
        path = prefix.with_name(f"{prefix.name}.part{start // size}")
        path.write_bytes(data[start : start + size])
        paths.append(path)
    return paths


def unpack_checkpoint(prefix: str | Path, checkpoint: str | Path, trust: bool = False) -> Path:
    """Join the chunks ``PREFIX.part*`` into the fp32 fairseq checkpoint ``checkpoint`` (tied weights shared, the
    tensors an inference-only packing left out as zeros, marked inference-only); returns its path."""
    state = read_checkpoint_chunks(prefix, trust)
    weights = cast_weights(state["model"], torch.float32)
    left_out = state.pop(LEFT_OUT_KEY, {})
    for key, (shape, dtype) in left_out.items():
        weights[key] = torch.zeros(shape, dtype=dtype)
    if left_out:
        state.setdefault(INFERENCE_ONLY_KEY, True)
    state["model"] = weights
    checkpoint = Path(checkpoint)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, checkpoint)
    return checkpoint


def rebuilt_ema_sum(embedding: torch.Tensor, ema_count: torch.Tensor, eps: float) -> torch.Tensor:
    """EMA sums ``[H, K, Dh]`` that reproduce ``embedding [H, K, Dh]`` from ``ema_count [H, K]`` under the
    Laplace-smoothed M step: ``s_k = e_k (c_k + eps) / (N + K eps) N`` with ``N = sum_k c_k``, so that the next EMA
    step moves each code from where it is."""
    total = ema_count.sum(-1, keepdim=True)  # (H, 1)
    k = ema_count.shape[-1]
    smoothed = (ema_count + eps) / (total + k * eps) * total  # (H, K)
    return embedding * smoothed.unsqueeze(-1)


def warm_start(export: str | Path, data_bin: str | Path, out: str | Path, codebook: str = "reinit", seed: int = 1,
               trust: bool = False) -> int:
    """Write a trainable checkpoint ``out`` from an inference-only latent-transformer checkpoint ``export`` (an
    unpacked inference-only packing); returns how many tensors of the autoencoder and the compressor were
    re-initialised.

    - The autoencoder and the compressor (:data:`RELEARNED_PREFIXES`) get the fresh random initialisation
      (``seed``) of a new model of the same configuration, built on ``data_bin``'s dictionary.
    - ``codebook="reinit"``: every codebook buffer as in a fresh model, so k-means sets the codes again on the first
      batch of the new autoencoder's outputs (decoder and prior relearn what each code means).
    - ``codebook="keep"``: the codes and counts stay, the EMA sums are rebuilt from them (:func:`rebuilt_ema_sum`).

    Everything else (source encoder, decoder, embeddings, latent prior, length predictor) keeps its weights. The
    optimizer state and the run's progress are dropped (:func:`~vqnat.checkpoint.drop_training_state`), and so is
    the inference-only mark.
    """
    if codebook not in CODEBOOK_CHOICES:
        raise ValueError(f"codebook must be one of {', '.join(CODEBOOK_CHOICES)}, got {codebook!r}")
    from fairseq.data import Dictionary

    from vqnat.models.latent_transformer import LatentTransformerModel

    state = read_checkpoint_as_saved(export, trust)
    if LEFT_OUT_KEY in state:
        raise ValueError(f"{export} is still in chunks' format: unpack it first")
    model_args = state["cfg"]["model"]
    if isinstance(model_args, dict):  # saved as a plain dict; build_model reads attributes
        model_args = argparse.Namespace(**model_args)
    dictionary = Dictionary.load(str(next(Path(data_bin).glob("dict.*.txt"))))
    torch.manual_seed(seed)
    model = LatentTransformerModel.build_model(
        model_args, SimpleNamespace(source_dictionary=dictionary, target_dictionary=dictionary))
    fresh = model.state_dict()
    weights = state["model"]
    relearned = 0
    for key in weights:
        if key.startswith(RELEARNED_PREFIXES):
            if fresh[key].shape != weights[key].shape:
                raise ValueError(f"{key}: shape {tuple(weights[key].shape)} in {export}, "
                                 f"{tuple(fresh[key].shape)} in a fresh model: wrong data-bin or config?")
            weights[key] = fresh[key].clone()
            relearned += 1
    if codebook == "keep":
        weights[CODEBOOK_PREFIX + "ema_sum"] = rebuilt_ema_sum(
            weights[CODEBOOK_PREFIX + "embedding"].float(), weights[CODEBOOK_PREFIX + "ema_count"].float(),
            model.cfg.codebook_eps)
    else:
        for key in fresh:
            if key.startswith(CODEBOOK_PREFIX):
                weights[key] = fresh[key].clone()
    drop_training_state(state, progress=True)
    state.pop(INFERENCE_ONLY_KEY, None)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out)
    return relearned
