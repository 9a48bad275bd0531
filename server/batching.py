"""Dynamic micro-batching: concurrent requests share one model call.

One :class:`MicroBatcher` per (model, decoding setting). Callers ``await submit(sentences)``; each sentence joins
a queue; a single consumer task takes the oldest sentences into a batch that closes when it holds
``max_sentences`` sentences or ``max_tokens`` estimated tokens, or ``max_wait_s`` after its oldest sentence
arrived, whichever comes first. The blocking model call runs in an executor thread (never on the event loop);
each caller's future then gets its own results, in its own order. A request larger than a batch is spread over
several batches. While the model is busy new sentences queue up, so under load batches fill without waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

BatchFn = Callable[[list[str]], list[str]]  # blocking: sentences -> translations, same length and order
CostFn = Callable[[str], int]  # estimated tokens of one sentence
BatchObserver = Callable[[int, float, list[float]], None]  # (sentences, model seconds, queue waits)


class BatcherClosed(RuntimeError):
    """The batcher is shutting down and takes no more work."""


@dataclass(eq=False)
class _Job:
    future: asyncio.Future[list[str]]
    results: list[str]
    remaining: int


@dataclass(eq=False)
class _Item:
    job: _Job
    index: int  # position in the caller's list
    text: str
    cost: int
    enqueued: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """Groups concurrent ``submit`` calls into model batches; see the module docstring."""

    def __init__(self, name: str, run_batch: BatchFn, executor: Executor, *, cost: CostFn | None = None,
                 max_sentences: int = 64, max_tokens: int = 4096, max_wait_s: float = 0.005,
                 on_batch: BatchObserver | None = None) -> None:
        if max_sentences < 1 or max_tokens < 1 or max_wait_s < 0:
            raise ValueError(f"bad batching limits: max_sentences={max_sentences}, max_tokens={max_tokens}, "
                             f"max_wait_s={max_wait_s} (need >= 1, >= 1, >= 0)")
        self.name = name
        self._run_batch = run_batch
        self._executor = executor
        self._cost = cost or (lambda text: len(text.split()) + 1)
        self.max_sentences, self.max_tokens, self.max_wait_s = max_sentences, max_tokens, max_wait_s
        self._on_batch = on_batch
        self._items: deque[_Item] = deque()
        self._running: list[_Item] = []  # the batch in the model now
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    # ------------------------------------------------------------------ public
    def start(self) -> None:
        """Start the consumer task on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._consume(), name=f"batcher-{self.name}")

    @property
    def queued(self) -> int:
        return len(self._items)

    async def submit(self, texts: Sequence[str]) -> list[str]:
        """Translate ``texts`` as part of whatever batches form; results in the order of ``texts``."""
        if self._closing:
            raise BatcherClosed(f"model {self.name!r} is shutting down")
        if self._task is None:
            self.start()
        if not texts:
            return []
        job = _Job(asyncio.get_running_loop().create_future(), [""] * len(texts), len(texts))
        self._items.extend(_Item(job, i, text, max(1, self._cost(text))) for i, text in enumerate(texts))
        self._wakeup.set()
        return await job.future  # cancelling the caller cancels the future; its queued sentences are skipped

    async def close(self, timeout_s: float = 30.0) -> None:
        """Stop taking work, finish what is queued (up to ``timeout_s``), fail whatever is left."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
            except TimeoutError:
                logger.warning("batcher %s: queue not drained in %.0f s, cancelling", self.name, timeout_s)
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
        self._fail_all(BatcherClosed(f"model {self.name!r} shut down"))

    # ------------------------------------------------------------------ consumer
    async def _consume(self) -> None:
        try:
            while True:
                if not self._items:
                    if self._closing:
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                await self._wait_for_more()
                batch = self._take_batch()
                if batch:
                    await self._run(batch)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a bug here must not leave callers waiting forever
            logger.exception("batcher %s crashed", self.name)
            self._fail_all(err)
            raise

    async def _wait_for_more(self) -> None:
        """Wait until the batch is full or its oldest sentence has waited ``max_wait_s``."""
        deadline = self._items[0].enqueued + self.max_wait_s
        while not self._closing and not self._full():
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._wakeup.wait()
            except TimeoutError:
                return

    def _full(self) -> bool:
        sentences = tokens = 0
        for item in self._items:
            sentences, tokens = sentences + 1, tokens + item.cost
            if sentences >= self.max_sentences or tokens >= self.max_tokens:
                return True
        return False

    def _take_batch(self) -> list[_Item]:
        batch: list[_Item] = []
        tokens = 0
        while self._items and len(batch) < self.max_sentences:
            item = self._items[0]
            if item.job.future.done():  # the caller gave up (timeout, disconnect)
                self._items.popleft()
                continue
            if batch and tokens + item.cost > self.max_tokens:
                break
            batch.append(self._items.popleft())
            tokens += item.cost
        return batch

    async def _run(self, batch: list[_Item]) -> None:
        texts = [item.text for item in batch]
        started = time.perf_counter()
        waits = [started - item.enqueued for item in batch]
        self._running = batch
        try:
            results = await asyncio.get_running_loop().run_in_executor(self._executor, self._run_batch, texts)
            if len(results) != len(texts):
                raise RuntimeError(f"model returned {len(results)} translations for {len(texts)} sentences")
        except Exception as err:
            logger.exception("batch of %d sentences failed on model %s", len(texts), self.name)
            for item in batch:
                if not item.job.future.done():
                    item.job.future.set_exception(err)
            self._running = []
            return
        self._running = []  # (left set when cancelled: close() fails those callers)
        seconds = time.perf_counter() - started
        for item, result in zip(batch, results, strict=True):
            job = item.job
            job.results[item.index] = result
            job.remaining -= 1
            if job.remaining == 0 and not job.future.done():
                job.future.set_result(job.results)
        if self._on_batch is not None:
            self._on_batch(len(batch), seconds, waits)
        logger.debug("batch %s: %d sentences in %.1f ms", self.name, len(batch), seconds * 1e3)

    def _fail_all(self, err: BaseException) -> None:
        """Fail every caller still waiting: queued sentences and the batch cut off in the model."""
        for item in [*self._running, *self._items]:
            if not item.job.future.done():
                item.job.future.set_exception(err)
        self._items.clear()
        self._running = []
