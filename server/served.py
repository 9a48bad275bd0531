"""A loaded model as the service runs it: one library ``Translator``, one model thread, one batcher per beam.

All model calls of one model run on its own single thread, so two batches never compete for the same weights
(torch already uses every core inside one call); the NAT model and the teacher can run side by side.

A request is encoded once (:meth:`ServedModel.prepare`: sentencepiece and dictionary ids), costed from its ids,
admitted or refused (:meth:`ServedModel.admit`), and its ids go to the model as they are.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor
from vqnat_server.batching import BatchAborted, BatcherClosed, MicroBatcher
from vqnat_server.metrics import Metrics
from vqnat_server.settings import Settings

from vqnat.inference import Translator

logger = logging.getLogger(__name__)


class RequestTooCostly(ValueError):
    """The request alone costs more than ``max_request_cost``."""


class Overloaded(RuntimeError):
    """Admitting the request would take the model's pending work over ``max_queued_cost``."""


def sentence_cost(tokens: int, beam: int, max_len_a: float, max_len_b: int) -> int:
    """Estimated work of one sentence of ``tokens`` source tokens (EOS included): source positions attended x
    hypotheses x output steps, with the output as long as the length limit allows."""
    return tokens * beam * max(1, int(max_len_a * tokens + max_len_b))


@dataclass(frozen=True)
class Prepared:
    """A request encoded for one model: the ids of its non-blank sentences, their token counts and costs."""

    beam: int | None
    count: int  # sentences in the request, blank ones included
    positions: list[int]  # where each encoded sentence goes in the answer
    ids: list[Tensor]
    tokens: list[int]
    costs: list[int]

    @property
    def cost(self) -> int:
        return sum(self.costs)


class ServedModel:
    def __init__(self, name: str, translator: Translator, settings: Settings, metrics: Metrics) -> None:
        self.name = name
        self.translator = translator
        self.settings = settings
        self.metrics = metrics
        self.default_beam = settings.teacher_beam if translator.kind == "autoregressive" else None
        if self.default_beam is not None and translator.options.beam != self.default_beam:
            translator = self._with_beam(self.default_beam)
        self._translators: dict[int | None, Translator] = {self.default_beam: translator}
        self._batchers: dict[int | None, MicroBatcher[Tensor]] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"vqnat-{name}")
        self._closed = False

    @property
    def kind(self) -> str:
        return self.translator.kind

    def describe(self) -> dict[str, object]:
        """What /v1/models shows: the library's description, with the checkpoint's file or folder name only."""
        info = dict(self.translator.describe())
        info.update(name=self.name, beam=self.default_beam, checkpoint=Path(str(info.get("checkpoint", ""))).name,
                    max_beam=self.settings.max_beam if self.default_beam is not None else None)
        return info

    # ------------------------------------------------------------------ admission
    def prepare(self, texts: Sequence[str], beam: int | None = None) -> Prepared:
        """Encode the non-blank sentences once and cost them (blank ones translate to "" without the model)."""
        beam = beam if beam is not None else self.default_beam
        options = self.translator.options
        width = beam if beam is not None else options.latent_beam
        positions, ids = [], []
        for i, text in enumerate(texts):
            if text.strip():
                positions.append(i)
                ids.append(self.translator.encode(text))
        tokens = [len(t) for t in ids]
        costs = [sentence_cost(n, width, options.max_len_a, options.max_len_b) for n in tokens]
        return Prepared(beam, len(texts), positions, ids, tokens, costs)

    def admit(self, request: Prepared) -> None:
        """Raise :class:`RequestTooCostly` or :class:`Overloaded` unless the request may queue now."""
        limit = self.settings.max_request_cost
        if request.cost > limit:
            raise RequestTooCostly(f"this request's estimated cost is {request.cost:,} and one request may cost at "
                                   f"most {limit:,} (max_request_cost; a sentence of n subword tokens costs "
                                   "n x beam x its output length limit): send fewer or shorter sentences, or a "
                                   "smaller beam")
        pending = sum(batcher.pending_cost for batcher in self._batchers.values())
        if pending + request.cost > self.settings.max_queued_cost:
            raise Overloaded(f"model {self.name!r} has {pending:,} cost units of work pending; with this request "
                             f"it would exceed {self.settings.max_queued_cost:,} (max_queued_cost): retry shortly")

    # ------------------------------------------------------------------ translating
    async def translate(self, request: Prepared, client: Hashable = None) -> list[str]:
        """Translate a prepared request through the batcher of its beam; one answer per sentence, in order."""
        if self._closed:
            raise BatcherClosed(f"model {self.name!r} is shutting down")
        answers = [""] * request.count
        if request.ids:
            batcher = self._batcher(request.beam)
            translated = await batcher.submit(request.ids, request.tokens, request.costs, client)
            for position, answer in zip(request.positions, translated, strict=True):
                answers[position] = answer
        return answers

    async def close(self) -> None:
        self._closed = True
        for batcher in self._batchers.values():
            await batcher.close(timeout_s=self.settings.shutdown_timeout_s)
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ internals
    def _batcher(self, beam: int | None) -> MicroBatcher[Tensor]:
        batcher = self._batchers.get(beam)
        if batcher is None:
            translator = self._translators.get(beam) or self._translators.setdefault(beam, self._with_beam(beam))

            def run_batch(ids: list[Tensor], abort: threading.Event) -> list[str]:
                return _translate_batch(translator, ids, abort)

            def observe(sentences: int, seconds: float, waits: list[float]) -> None:
                self.metrics.observe_batch(self.name, sentences, seconds, waits)

            batcher = MicroBatcher(
                f"{self.name}/beam={beam}" if beam is not None else self.name, run_batch, self._executor,
                max_sentences=self.settings.max_batch_sentences, max_tokens=self.settings.max_batch_tokens,
                max_cost=self.settings.max_request_cost, max_wait_s=self.settings.max_wait_ms / 1000,
                on_batch=observe)
            batcher.start()
            self._batchers[beam] = batcher
        return batcher

    def _with_beam(self, beam: int | None) -> Translator:
        """The same model and dictionaries decoded with another beam (a new search, no new weights)."""
        base = self.translator
        options = dataclasses.replace(base.options, beam=beam if beam is not None else base.options.beam)
        return Translator(base.model, base.task, base.tokenizer, options, checkpoint=base.checkpoint)


def _translate_batch(translator: Translator, ids: list[Tensor], abort: threading.Event) -> list[str]:
    """One model call; an autoregressive search stops between steps once ``abort`` is set."""
    from vqnat.sentence_limits import GenerationStopped, SentenceLimitedGenerator

    if abort.is_set():
        raise BatchAborted("every caller of this batch had gone before it started")
    search = translator.generator if isinstance(translator.generator, SentenceLimitedGenerator) else None
    if search is not None:
        search.should_stop = abort.is_set
    try:
        return translator.translate_ids(ids)
    except GenerationStopped as err:
        raise BatchAborted("every caller of this batch had gone") from err
    finally:
        if search is not None:
            search.should_stop = None


def load_translators(settings: Settings) -> dict[str, Translator]:
    """Load every configured model (blocking). Raises ``ValueError`` naming the bad one."""
    from vqnat.inference import DecodingOptions

    translators = {}
    for name, path in settings.checkpoints.items():
        logger.info("loading %s model from %s", name, path)
        try:
            translator = Translator.load(path, data_dir=settings.data_dir, device=settings.device,
                                         options=DecodingOptions(beam=settings.teacher_beam),
                                         trust_checkpoint=settings.trust_checkpoint)
        except ValueError as err:
            raise ValueError(f"--{name}: {err}") from err
        except RuntimeError as err:  # e.g. a state dict from another version of the model
            first = str(err).strip().splitlines()
            raise ValueError(f"--{name}: {path} does not fit this version of the model: "
                             f"{' '.join(line.strip() for line in first[:2])}") from err
        expected = "nat" if name == "nat" else "autoregressive"
        if translator.kind != expected:
            raise ValueError(f"--{name}: {path} holds a {translator.kind!r} model, expected {expected!r}")
        translators[name] = translator
    return translators
