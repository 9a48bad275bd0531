"""A loaded model as the service runs it: one library ``Translator``, one model thread, one batcher per beam.

All model calls of one model run on its own single thread, so two batches never compete for the same weights
(torch already uses every core inside one call); the NAT model and the teacher can run side by side.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from server.batching import BatcherClosed, MicroBatcher
from server.metrics import Metrics
from server.settings import Settings
from vqnat.inference import Translator

logger = logging.getLogger(__name__)


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
        self._batchers: dict[int | None, MicroBatcher] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"vqnat-{name}")
        self._closed = False

    @property
    def kind(self) -> str:
        return self.translator.kind

    def describe(self) -> dict[str, object]:
        info = dict(self.translator.describe())
        info.update(name=self.name, beam=self.default_beam,
                    max_beam=self.settings.max_beam if self.default_beam is not None else None)
        return info

    async def translate(self, texts: Sequence[str], beam: int | None = None) -> list[str]:
        """Translate through the batcher of this beam (``None``: the default)."""
        if self._closed:
            raise BatcherClosed(f"model {self.name!r} is shutting down")
        return await self._batcher(beam if beam is not None else self.default_beam).submit(texts)

    async def close(self) -> None:
        self._closed = True
        for batcher in self._batchers.values():
            await batcher.close(timeout_s=self.settings.request_timeout_s)
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ internals
    def _batcher(self, beam: int | None) -> MicroBatcher:
        batcher = self._batchers.get(beam)
        if batcher is None:
            translator = self._translators.get(beam) or self._translators.setdefault(beam, self._with_beam(beam))
            batch_size = self.settings.max_batch_sentences

            def run_batch(texts: list[str]) -> list[str]:
                return translator.translate(texts, batch_size=batch_size)

            def observe(sentences: int, seconds: float, waits: list[float]) -> None:
                self.metrics.observe_batch(self.name, sentences, seconds, waits)

            batcher = MicroBatcher(
                f"{self.name}/beam={beam}" if beam is not None else self.name, run_batch, self._executor,
                cost=lambda text: len(translator.tokenizer.encode(text).split()) + 1,  # subwords + EOS
                max_sentences=self.settings.max_batch_sentences, max_tokens=self.settings.max_batch_tokens,
                max_wait_s=self.settings.max_wait_ms / 1000, on_batch=observe)
            batcher.start()
            self._batchers[beam] = batcher
        return batcher

    def _with_beam(self, beam: int | None) -> Translator:
        """The same model and dictionaries decoded with another beam (a new search, no new weights)."""
        base = self.translator
        options = dataclasses.replace(base.options, beam=beam if beam is not None else base.options.beam)
        return Translator(base.model, base.task, base.tokenizer, options, checkpoint=base.checkpoint)


def load_translators(settings: Settings) -> dict[str, Translator]:
    """Load every configured checkpoint (blocking). Raises ``ValueError`` naming the bad checkpoint."""
    from vqnat.inference import DecodingOptions

    translators = {}
    for name, path in settings.checkpoints.items():
        logger.info("loading %s model from %s (a pickle: only trusted checkpoints are loaded)", name, path)
        try:
            translator = Translator.load(path, data_dir=settings.data_dir, device=settings.device,
                                         options=DecodingOptions(beam=settings.teacher_beam))
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
