"""One batched translation API for the CLI, the server and the benchmarks: load a checkpoint once, translate lists.

Works for the latent transformer (one prior pass over ~|x|/4 latents, then one parallel decoder pass) and for
fairseq's autoregressive models (greedy or beam search through fairseq's ``SequenceGenerator``).

Input handling, documented:
- an empty or whitespace-only sentence translates to ``""`` (the model is not called for it);
- words the dictionary does not know become ``<unk>``;
- a sentence longer than the model's ``max_source_positions`` (in subword tokens, EOS included) is truncated to
  fit, with a warning.

Checkpoints are pickles: only load checkpoints you trust (see :mod:`vqnat.checkpoint`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Protocol

import torch
from torch import Tensor

from vqnat.checkpoint import allow_trusted_checkpoint_loading

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
    """

    beam: int = 1
    max_len_a: float = 1.2
    max_len_b: int = 10
    collapse_repeated_tokens: bool = False  # NAT clean-up: "a a b" -> "a b"
    latent_beam: int = 1
    length_ratio: float | None = None
    length_offset: int | None = None


class Translator:
    """A loaded model, its dictionaries and tokenizer. ``translate(list of str) -> list of str``."""

    def __init__(self, model: torch.nn.Module, task, tokenizer: TextTokenizer, options: DecodingOptions,
                 checkpoint: str = "", rescorer: Translator | None = None) -> None:
        from vqnat.models.latent_transformer import LatentTransformerModel

        self.model = model.eval()
        self.task = task
        self.tokenizer = tokenizer
        self.options = options
        self.checkpoint = checkpoint
        self.kind: ModelKind = "nat" if isinstance(model, LatentTransformerModel) else "autoregressive"
        self.src_dict, self.tgt_dict = task.source_dictionary, task.target_dictionary
        self.max_source_positions = _max_source_positions(model)
        self.rescorer = rescorer
        self._check_options()
        self.generator = self._build_generator()

    def _check_options(self) -> None:
        options = self.options
        if options.latent_beam < 1:
            raise ValueError(f"latent_beam must be >= 1, got {options.latent_beam}")
        nat_only = options.latent_beam > 1 or self.rescorer is not None or options.length_ratio is not None \
            or options.length_offset is not None
        if self.kind != "nat":
            if nat_only:
                raise ValueError("latent beam, rescoring and length overrides apply to the latent transformer only")
            return
        if self.rescorer is not None:
            if self.rescorer.kind != "autoregressive":
                raise ValueError("the rescorer must be an autoregressive model (the teacher)")
            if self.rescorer.src_dict != self.src_dict or self.rescorer.tgt_dict != self.tgt_dict:
                raise ValueError("the rescorer's dictionaries differ from the latent transformer's: rescore with "
                                 "the teacher it was distilled from")
            if options.latent_beam < 2:
                raise ValueError("rescoring needs candidates: set latent_beam >= 2")
        cfg = self.model.cfg
        if options.length_ratio is not None or options.length_offset is not None:
            if cfg.length_predictor and options.length_ratio is not None:
                raise ValueError("this model predicts lengths: only length_offset can be overridden")
            self.model.cfg = replace(cfg, length_ratio=cfg.length_ratio if options.length_ratio is None
                                     else options.length_ratio,
                                     length_offset=cfg.length_offset if options.length_offset is None
                                     else options.length_offset)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, checkpoint: str | Path, data_dir: str | Path | None = None,
             tokenizer: TextTokenizer | None = None, options: DecodingOptions | None = None,
             device: str = "cpu", rescorer: str | Path | None = None) -> Translator:
        """Load a fairseq checkpoint (NAT or autoregressive) trained by vqnat or fairseq.

        ``data_dir`` holds the dictionaries (``dict.<lang>.txt``); by default the folder recorded at training.
        ``tokenizer``: by default the sentencepiece model of a ``vqnat prepare`` folder found in ``data_dir`` or
        its parent, else whitespace tokens. ``rescorer``: an autoregressive checkpoint (the teacher) that picks
        the best of the NAT's ``latent_beam`` candidates (noisy parallel decoding).
        """
        scorer = None
        if rescorer is not None:
            scorer = cls.load(rescorer, data_dir=data_dir, tokenizer=tokenizer, device=device)
        from fairseq import checkpoint_utils
        from fairseq.models import FairseqEncoderDecoderModel

        import vqnat  # noqa: F401  (registers the plugin: without it fairseq fails with an obscure IndexError)

        path = Path(checkpoint)
        if not path.is_file():
            raise ValueError(f"checkpoint not found: {path}")
        allow_trusted_checkpoint_loading()
        overrides = {"data": str(dictionary_folder(Path(data_dir)))} if data_dir is not None else {}
        try:
            state = checkpoint_utils.load_checkpoint_to_cpu(str(path), arg_overrides=overrides)
        except Exception as err:  # a truncated file, or not a fairseq checkpoint at all
            raise ValueError(f"{path} is not a readable fairseq checkpoint: {type(err).__name__}: {err}") from err
        cfg = state.get("cfg")
        if cfg is None or cfg.get("task") is None:
            raise ValueError(f"{path} has no fairseq config: not a checkpoint written by fairseq-train / vqnat")
        task_name = cfg.task.get("_name")
        if task_name not in ("translation", "vqnat_translation", "translation_lev"):
            raise ValueError(f"{path} is a {task_name!r} checkpoint ({cfg.model.get('_name')}), "
                             "not a translation model")
        data = Path(cfg.task.data.split(":")[0])
        if not data.is_dir():
            raise ValueError(f"the dictionaries of {path} were in {data}, which does not exist here: "
                             "pass the prepared data-bin folder (data_dir / --data-dir)")
        dictionary_folder(data)  # a recorded folder is a data-bin: this only checks that its dictionaries are there
        from fairseq import tasks

        task = tasks.setup_task(cfg.task)
        model = task.build_model(cfg.model)
        try:
            model.load_state_dict(state["model"], strict=True, model_cfg=cfg.model)
        except RuntimeError as err:  # missing/unexpected/mis-shaped weights
            first = str(err).strip().splitlines()[-1].strip()
            raise ValueError(f"{path} does not match this version of {type(model).__name__} "
                             f"(another architecture or vqnat version?): {first}") from err
        if not isinstance(model, FairseqEncoderDecoderModel) and not hasattr(model, "translate"):
            raise ValueError(f"{path} holds a {type(model).__name__}, not a translation model")
        if tokenizer is None:
            tokenizer = _find_tokenizer(data)
        return cls(model.to(device), task, tokenizer, options or DecodingOptions(), checkpoint=str(path),
                   rescorer=scorer)

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
            info.update(latent_beam=self.options.latent_beam, length_predictor=bool(cfg.length_predictor),
                        length_ratio=cfg.length_ratio, length_offset=cfg.length_offset,
                        rescorer=self.rescorer.checkpoint if self.rescorer else None)
        return info

    def _build_generator(self):
        from vqnat.generation import LatentTransformerGenerator

        if self.kind == "nat":
            return LatentTransformerGenerator(self.tgt_dict, self.options.collapse_repeated_tokens,
                                              latent_beam=self.options.latent_beam,
                                              rescorer=self.rescorer.model if self.rescorer else None)
        from fairseq.sequence_generator import SequenceGenerator

        return SequenceGenerator([self.model], self.tgt_dict, beam_size=self.options.beam,
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


def _find_tokenizer(data: Path) -> TextTokenizer:
    from vqnat.data.tokenizer import SPM_MODEL, SentencePieceTokenizer

    for folder in (data, data.parent):
        if (folder / SPM_MODEL).is_file() or (folder / "prepare.json").is_file():
            return SentencePieceTokenizer.from_prepared(folder)
    logger.info("no sentencepiece model next to %s: using whitespace tokens", data)
    return WhitespaceTokenizer()
