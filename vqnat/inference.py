"""One batched translation API for the CLI, the server and the benchmarks: load a checkpoint once, translate lists.

Works for the latent transformer (one prior pass over ~|x|/4 latents, then one parallel decoder pass) and for
fairseq's autoregressive models (greedy or beam search through fairseq's ``SequenceGenerator``).

Input handling, documented:
- an empty or whitespace-only sentence translates to ``""`` (the model is not called for it);
- words the dictionary does not know become ``<unk>``;
- a sentence longer than the model's ``max_source_positions`` (in subword tokens, EOS included) is truncated to
  fit, with a warning.

Models load from a bundle folder (safetensors, no pickle) or from a fairseq checkpoint, which is a pickle: a checkpoint
from outside vqnat's own training folders loads only when trusted (see :mod:`vqnat.checkpoint`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import torch
from torch import Tensor

from vqnat.checkpoint import is_bundle, read_bundle, read_checkpoint

logger = logging.getLogger(__name__)

ModelKind = Literal["nat", "autoregressive"]


class TextTokenizer(Protocol):
    def encode(self, text: str) -> str: ...

    def decode(self, pieces: str) -> str: ...


class WhitespaceTokenizer:
    """Identity tokenizer for data that is already split into the model's tokens."""

    def encode(self, text: str) -> str:
        return " ".join(text.split())

    def decode(self, pieces: str) -> str:
        return pieces


@dataclass(frozen=True)
class DecodingOptions:
    """How to decode. ``beam`` and ``max_len_*`` apply to autoregressive models only; the rest to the NAT.

    ``latent_beam``: beam search over the latents (1 = greedy); with a rescorer (``Translator.load(...,
    rescorer=teacher checkpoint)``) the candidates are rescored by the teacher (noisy parallel decoding).
    ``length_ratio`` / ``length_offset``: override the NAT's target-length rule at inference (None = as trained).
    ``refine_steps``: NAT refinement passes (the output through the autoencoder and the decoder again; needs a
    model with its autoencoder, not an inference-only export; see ``LatentTransformerModel.refine``).
    """

    beam: int = 1
    max_len_a: float = 1.2
    max_len_b: int = 10
    # NAT clean-up "a a b" -> "a b"; None: the model's own setting (its task config: a bundle's config.json)
    collapse_repeated_tokens: bool | None = None
    latent_beam: int = 1
    length_ratio: float | None = None
    length_offset: int | None = None
    refine_steps: int = 0


class Translator:
    """A loaded model, its dictionaries and tokenizer. ``translate(list of str) -> list of str``."""

    def __init__(self, model: torch.nn.Module, task, tokenizer: TextTokenizer, options: DecodingOptions,
                 checkpoint: str = "", rescorer: Translator | None = None, inference_only: bool = False) -> None:
        from vqnat.models.latent_transformer import LatentTransformerModel

        self.model = model.eval()
        self.task = task
        self.tokenizer = tokenizer
        self.options = options
        self.checkpoint = checkpoint
        self.inference_only = inference_only  # an export without the autoencoder (no refinement)
        self.kind: ModelKind = "nat" if isinstance(model, LatentTransformerModel) else "autoregressive"
        self.src_dict, self.tgt_dict = task.source_dictionary, task.target_dictionary
        self.max_source_positions = _max_source_positions(model)
        self.rescorer = rescorer
        self.int8 = is_int8(self.model)
        collapse = options.collapse_repeated_tokens
        self.collapse_repeated_tokens = bool(getattr(getattr(task, "cfg", None), "collapse_repeated_tokens", False)
                                             if collapse is None else collapse)
        self._check_options()
        self.generator = self._build_generator()

    def _check_options(self) -> None:
        options = self.options
        if options.latent_beam < 1:
            raise ValueError(f"latent_beam must be >= 1, got {options.latent_beam}")
        if options.refine_steps < 0:
            raise ValueError(f"refine_steps must be >= 0, got {options.refine_steps}")
        nat_only = options.latent_beam > 1 or self.rescorer is not None or options.length_ratio is not None \
            or options.length_offset is not None or options.refine_steps > 0
        if self.kind != "nat":
            if nat_only:
                raise ValueError("latent beam, rescoring, refinement and length overrides apply to the latent "
                                 "transformer only")
            return
        if options.refine_steps > 0:
            if options.latent_beam > 1:
                raise ValueError("refinement applies to greedy latents: use latent_beam 1")
            if self.inference_only:
                raise ValueError(f"{self.checkpoint} is an inference-only export: it has no autoencoder to refine "
                                 "with (export the checkpoint without --inference-only)")
        if self.rescorer is not None:
            if self.rescorer.kind != "autoregressive":
                raise ValueError("the rescorer must be an autoregressive model (the teacher)")
            if self.rescorer.src_dict != self.src_dict or self.rescorer.tgt_dict != self.tgt_dict:
                raise ValueError("the rescorer's dictionaries differ from the latent transformer's: rescore with "
                                 "the teacher it was distilled from")
            if options.latent_beam < 2:
                raise ValueError("rescoring needs candidates: set latent_beam >= 2")
        if self.model.cfg.length_predictor and options.length_ratio is not None:
            raise ValueError("this model predicts lengths: only length_offset can be overridden")

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, model: str | Path, data_dir: str | Path | None = None,
             tokenizer: TextTokenizer | None = None, options: DecodingOptions | None = None,
             device: str = "cpu", rescorer: str | Path | None = None, trust_checkpoint: bool = False,
             int8: bool = False) -> Translator:
        """Load a model bundle folder (no pickle: see :mod:`vqnat.checkpoint`) or a fairseq checkpoint (NAT or
        autoregressive) trained by vqnat or fairseq.

        A ``.pt`` checkpoint is a pickle: it loads only from a vqnat training folder of this machine or with
        ``trust_checkpoint=True`` (else :class:`~vqnat.checkpoint.UntrustedCheckpointError`).
        ``data_dir`` holds the dictionaries (``dict.<lang>.txt``) of a checkpoint; by default the folder recorded
        at training (a bundle carries its own). ``tokenizer``: by default the bundle's sentencepiece model, or that
        of a ``vqnat prepare`` folder found in ``data_dir`` or its parent, else whitespace tokens. ``rescorer``: an
        autoregressive model (the teacher) that picks the best of the NAT's ``latent_beam`` candidates (noisy
        parallel decoding). ``int8``: dynamic int8 quantization of the Linear layers (CPU inference).
        """
        scorer = None
        if rescorer is not None:
            scorer = cls.load(rescorer, data_dir=data_dir, tokenizer=tokenizer, device=device,
                              trust_checkpoint=trust_checkpoint, int8=int8)
        path = Path(model)
        if is_bundle(path):
            config, weights = read_bundle(path)
            task, net = build_task_and_model(config["task"], config["model"], path, weights, source=str(path),
                                             missing_ok=tuple(config.get("left_out", ())),
                                             namespace=config.get("model_config_type") == "namespace")
            data, inference_only = path, bool(config.get("inference_only"))
        else:
            from vqnat.checkpoint_tools import is_inference_only

            state = read_checkpoint(path, trust=trust_checkpoint)
            inference_only = is_inference_only(state)
            cfg = state["cfg"]
            data = Path(str(cfg.task.data).split(":")[0]) if data_dir is None else dictionary_folder(Path(data_dir))
            if not data.is_dir():
                raise ValueError(f"the dictionaries of {path} were in {data}, which does not exist here: "
                                 "pass the prepared data-bin folder (data_dir / --data-dir)")
            task, net = build_task_and_model(cfg.task, cfg.model, data, state["model"], source=str(path))
        if int8:
            net = quantize_int8(net)
        if tokenizer is None:
            tokenizer = _find_tokenizer(data)
        return cls(net.to(device), task, tokenizer, options or DecodingOptions(), checkpoint=str(path),
                   rescorer=scorer, inference_only=inference_only)

    # ------------------------------------------------------------------ translating
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def translate(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> list[str]:
        """Translate sentences in batches of ``batch_size`` (sorted by length for less padding), in order.

        ``progress``: a progress bar (sentences) on stderr when it is a terminal.
        """
        if isinstance(texts, str):
            raise ValueError("translate() takes a list of sentences, not a single string")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        results = [""] * len(texts)
        encoded = {i: self.encode(t) for i, t in enumerate(texts) if isinstance(t, str) and t.strip()}
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise ValueError(f"sentence {bad[0]} is a {type(texts[bad[0]]).__name__}, not a string")
        order = sorted(encoded, key=lambda i: len(encoded[i]))
        bar = _progress_bar(len(order)) if progress else None  # none at all on the latency-critical path
        for start in range(0, len(order), batch_size):
            ids = order[start : start + batch_size]
            for i, hyp in zip(ids, self.translate_ids([encoded[i] for i in ids]), strict=True):
                results[i] = hyp
            if bar is not None:
                bar.update(len(ids))
        if bar is not None:
            bar.close()
        return results

    def encode(self, text: str) -> Tensor:
        """Text -> source ids ``[S]`` ending in EOS, truncated to the model's limit."""
        line = self.tokenizer.encode(text)
        # As Dictionary.encode_line(line, add_if_not_exist=False), which writes one tensor element per word.
        ids = torch.tensor([self.src_dict.index(word) for word in line.split()] + [self.src_dict.eos()])
        if self.max_source_positions and len(ids) > self.max_source_positions:
            logger.warning("source of %d tokens truncated to max_source_positions=%d", len(ids),
                           self.max_source_positions)
            ids = torch.cat([ids[: self.max_source_positions - 1], ids[-1:]])
        return ids

    @torch.inference_mode()
    def translate_ids(self, batch: list[Tensor]) -> list[str]:
        """One model batch of encoded sources -> detokenized translations, in the same order."""
        from fairseq.data import data_utils

        src_tokens = data_utils.collate_tokens(batch, self.src_dict.pad(), self.src_dict.eos(),
                                               left_pad=getattr(self.task.cfg, "left_pad_source", True))
        sample = {"net_input": {"src_tokens": src_tokens.to(self.device),
                                "src_lengths": torch.tensor([len(t) for t in batch], device=self.device)}}
        if self.int8:
            with _fastpath(False):
                hypos = self.generator.generate([self.model], sample)
        else:
            hypos = self.generator.generate([self.model], sample)
        out = []
        for hypo in hypos:
            # A list, not a tensor: fairseq's Dictionary.string reads a tensor one element (one small op) at a time.
            pieces = self.tgt_dict.string(hypo[0]["tokens"].tolist(), extra_symbols_to_ignore={self.tgt_dict.eos()})
            out.append(self.tokenizer.decode(pieces))
        return out

    def describe(self) -> dict[str, object]:
        """Settings worth showing to a user (e.g. by the server's /v1/models)."""
        params = sum(p.numel() for p in self.model.parameters())
        info: dict[str, object] = {
            "kind": self.kind, "checkpoint": self.checkpoint, "architecture": type(self.model).__name__,
            "parameters": params, "beam": self.options.beam if self.kind == "autoregressive" else None,
            "max_source_positions": self.max_source_positions, "device": str(self.device)}
        if self.kind == "nat":
            cfg = self.model.cfg
            ratio, offset = self.options.length_ratio, self.options.length_offset
            info.update(latent_beam=self.options.latent_beam, length_predictor=bool(cfg.length_predictor),
                        length_ratio=cfg.length_ratio if ratio is None else ratio,
                        length_offset=cfg.length_offset if offset is None else offset,
                        rescorer=self.rescorer.checkpoint if self.rescorer else None)
        return info

    def _build_generator(self):
        from vqnat.generation import LatentTransformerGenerator

        if self.kind == "nat":
            return LatentTransformerGenerator(self.tgt_dict, self.collapse_repeated_tokens,
                                              latent_beam=self.options.latent_beam,
                                              rescorer=self.rescorer.model if self.rescorer else None,
                                              length_ratio=self.options.length_ratio,
                                              length_offset=self.options.length_offset,
                                              refine_steps=self.options.refine_steps)
        from vqnat.sentence_limits import SentenceLimitedGenerator

        # each sentence stops at its own max_len_a * length + max_len_b: an answer does not depend on its batch
        return SentenceLimitedGenerator([self.model], self.tgt_dict, beam_size=self.options.beam,
                                        max_len_a=self.options.max_len_a, max_len_b=self.options.max_len_b)


def _progress_bar(total: int):
    """A tqdm bar over ``total`` sentences on stderr, drawn only when stderr is a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, desc="translating", unit=" sent", disable=None)


def dictionary_folder(folder: Path) -> Path:
    """The folder that holds the ``dict.<lang>.txt`` files: ``folder`` itself, or its ``data-bin`` when ``folder``
    is a ``vqnat prepare`` output. Raises ``ValueError`` (one line) when neither has them."""
    if not folder.is_dir():
        raise ValueError(f"no such folder: {folder} (--data-dir / data_dir)")
    if any(folder.glob("dict.*.txt")):
        return folder
    if any((folder / "data-bin").glob("dict.*.txt")):
        return folder / "data-bin"
    raise ValueError(f"{folder} holds no dictionaries (dict.<lang>.txt): pass the data-bin folder of "
                     "`vqnat prepare` (or the prepared folder that contains it)")


def _max_source_positions(model: torch.nn.Module) -> int:
    limits = model.max_positions()
    limit = limits[0] if isinstance(limits, tuple) else limits
    return int(limit) if limit else 0


def build_task_and_model(task_cfg, model_cfg, data: Path, weights, source: str, missing_ok: Sequence[str] = (),
                         namespace: bool = False):
    """``(task, model)`` of a translation model: the fairseq task set up on the dictionaries in ``data``, the
    model built from ``model_cfg`` with ``weights`` loaded (all of them, except the names in ``missing_ok``, which
    keep their initial values). Configs may be OmegaConf, argparse (``namespace``) or plain dicts."""
    from argparse import Namespace

    from fairseq import tasks
    from fairseq.models import FairseqEncoderDecoderModel
    from omegaconf import DictConfig, OmegaConf

    import vqnat  # noqa: F401  (registers the plugin: without it fairseq fails with an obscure IndexError)

    task_cfg = OmegaConf.create(task_cfg if isinstance(task_cfg, dict) else OmegaConf.to_container(task_cfg))
    task_name = task_cfg.get("_name")
    if task_name not in ("translation", "vqnat_translation", "translation_lev"):
        raise ValueError(f"{source} is a {task_name!r} model, not a translation model")
    dictionary_folder(data)  # one-line error when the dictionaries are missing
    task_cfg.data = str(data)
    if isinstance(model_cfg, dict):
        model_cfg = Namespace(**model_cfg) if namespace else OmegaConf.create(model_cfg)
    elif not isinstance(model_cfg, (DictConfig, Namespace)):
        raise ValueError(f"{source} has a model config of unknown type {type(model_cfg).__name__}")
    task = tasks.setup_task(task_cfg)
    model = task.build_model(model_cfg)
    try:
        incompatible = model.load_state_dict(weights, strict=False, model_cfg=model_cfg)
    except RuntimeError as err:  # mis-shaped weights
        first = str(err).strip().splitlines()[-1].strip()
        raise ValueError(f"{source} does not match this version of {type(model).__name__} (another architecture or "
                         f"vqnat version?): {first}") from err
    missing = [k for k in incompatible.missing_keys if k not in set(missing_ok)]
    if missing or incompatible.unexpected_keys:
        names = (missing or incompatible.unexpected_keys)[:3]
        raise ValueError(f"{source} does not match this version of {type(model).__name__} (another architecture or "
                         f"vqnat version?): {'missing' if missing else 'unexpected'} weights {', '.join(names)}")
    if not isinstance(model, FairseqEncoderDecoderModel) and not hasattr(model, "translate"):
        raise ValueError(f"{source} holds a {type(model).__name__}, not a translation model")
    return task, model.eval()


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantization of the ``nn.Linear`` layers (weights int8, activations quantized per call; CPU).

    Layers whose weight another module reads directly stay fp32: fairseq's encoder self-attention hands its
    projection weights to ``F.multi_head_attention_forward``, and PyTorch's attention keeps ``in_proj_weight`` and
    a non-quantizable ``out_proj``. PyTorch's encoder-layer fast path reads the feed-forward weights too, so an
    int8 model runs with that fast path off (:meth:`Translator.translate_ids`).
    """
    from fairseq.modules import MultiheadAttention

    direct = {f"{name}.{proj}" for name, module in model.named_modules()
              if isinstance(module, MultiheadAttention) and name.startswith("encoder.")
              for proj in ("q_proj", "k_proj", "v_proj", "out_proj")}
    names = {name for name, module in model.named_modules() if type(module) is torch.nn.Linear and name not in direct}
    return torch.ao.quantization.quantize_dynamic(model, names, dtype=torch.qint8)


def is_int8(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in model.modules())


@contextlib.contextmanager
def _fastpath(enabled: bool) -> Iterator[None]:
    """PyTorch's fused attention fast path on or off (a process-wide switch) for the duration of the block."""
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(enabled and before)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


def find_tokenizer_model(data: Path) -> Path | None:
    """The sentencepiece model of ``data`` (a bundle, a prepared folder or its data-bin), if there is one."""
    tokenizer = _find_tokenizer(data)
    return getattr(tokenizer, "model_path", None)


def _find_tokenizer(data: Path) -> TextTokenizer:
    from vqnat.data.tokenizer import MANIFEST, SPM_MODEL, SentencePieceTokenizer

    for folder in (data, data.parent):
        if (folder / SPM_MODEL).is_file() or (folder / MANIFEST).is_file():
            return SentencePieceTokenizer.from_prepared(folder)
    logger.info("no sentencepiece model next to %s: using whitespace tokens", data)
    return WhitespaceTokenizer()
