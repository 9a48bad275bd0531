"""Dynamic micro-batching with fair queueing: concurrent requests share model calls, and take turns.

One :class:`MicroBatcher` per (model, decoding setting). Callers ``await submit(items, costs, client)``; the
sentences of each request wait in the request's own queue, the requests of each client in the client's queue.
A single consumer task builds each batch by taking one sentence per client in turn (and, within a client, one per
request in turn), so one client's large request shares the model with everyone else's small ones instead of
holding them up. A batch closes when it holds ``max_sentences`` sentences, ``max_tokens`` tokens or ``max_cost``
cost, or ``max_wait_s`` after its oldest sentence arrived, whichever comes first. The blocking model call runs in
an executor thread (never on the event loop); each caller's future then gets its own results, in its own order.

Cancellation: a caller that gives up (timeout, disconnect: its ``submit`` is cancelled) leaves the queue at once,
and when every caller of the batch in the model has given up, the batch's ``abort`` event is set so the model
call can stop early (see :class:`BatchFn`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
# blocking: one batch of payloads and its abort event -> translations, same length and order
BatchFn = Callable[[list[T], threading.Event], list[str]]
BatchObserver = Callable[[int, float, list[float]], None]  # (sentences, model seconds, queue waits)


class BatcherClosed(RuntimeError):
    """The batcher is shutting down and takes no more work."""


class BatchAborted(RuntimeError):
    """A model call stopped early because every caller of its batch had gone."""


@dataclass(eq=False)
class _Job:
    client: Hashable
    future: asyncio.Future[list[str]]
    results: list[str]
    remaining: int
    items: deque[_Item] = field(default_factory=deque)


@dataclass(eq=False)
class _Item(Generic[T]):
    job: _Job
    index: int  # position in the caller's list
    payload: T
    tokens: int
    cost: int
    enqueued: float = field(default_factory=time.perf_counter)


class MicroBatcher(Generic[T]):
    """Groups concurrent ``submit`` calls into model batches; see the module docstring."""

    def __init__(self, name: str, run_batch: BatchFn, executor: Executor, *, max_sentences: int = 64,
                 max_tokens: int = 4096, max_cost: int | None = None, max_wait_s: float = 0.005,
                 on_batch: BatchObserver | None = None) -> None:
        if max_sentences < 1 or max_tokens < 1 or max_wait_s < 0 or (max_cost is not None and max_cost < 1):
            raise ValueError(f"bad batching limits: max_sentences={max_sentences}, max_tokens={max_tokens}, "
                             f"max_cost={max_cost}, max_wait_s={max_wait_s} (need >= 1, >= 1, >= 1, >= 0)")
        self.name = name
        self._run_batch = run_batch
        self._executor = executor
        self.max_sentences, self.max_tokens, self.max_wait_s = max_sentences, max_tokens, max_wait_s
        self.max_cost = max_cost
        self._on_batch = on_batch
        self._clients: OrderedDict[Hashable, deque[_Job]] = OrderedDict()  # turn order: first = next
        self._queued_sentences = self._queued_tokens = self._queued_cost = 0
        self._running: list[_Item] = []  # the batch in the model now
        self._running_cost = 0
        self._abort = threading.Event()
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
        """Sentences waiting for a batch."""
        return self._queued_sentences

    @property
    def pending_cost(self) -> int:
        """Cost of the sentences waiting and of the batch in the model."""
        return self._queued_cost + self._running_cost

    async def submit(self, payloads: Sequence[T], tokens: Sequence[int] | None = None,
                     costs: Sequence[int] | None = None, client: Hashable = None) -> list[str]:
        """Translate ``payloads`` as part of whatever batches form; the results in the order of ``payloads``.
        ``tokens`` and ``costs``: each payload's (default 1, and its tokens); ``client`` keys the turn-taking."""
        if self._closing:
            raise BatcherClosed(f"model {self.name!r} is shutting down")
        if not payloads:
            return []
        tokens = tokens if tokens is not None else [1] * len(payloads)
        costs = costs if costs is not None else tokens
        if self._task is None:
            self.start()
        job = _Job(client, asyncio.get_running_loop().create_future(), [""] * len(payloads), len(payloads))
        job.items.extend(_Item(job, i, payload, max(1, n), max(1, c))
                         for i, (payload, n, c) in enumerate(zip(payloads, tokens, costs, strict=True)))
        self._clients.setdefault(client, deque()).append(job)
        self._count(job.items, +1)
        self._wakeup.set()
        try:
            return await job.future
        except asyncio.CancelledError:
            self._abandon(job)
            raise

    async def close(self, timeout_s: float = 30.0) -> None:
        """Stop taking work, finish what is queued (up to ``timeout_s``), fail whatever is left."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
            except TimeoutError:
                logger.warning("batcher %s: queue not drained in %.1f s, cancelling", self.name, timeout_s)
                self._abort.set()
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
        self._fail_all(BatcherClosed(f"model {self.name!r} shut down"))

    # ------------------------------------------------------------------ queue bookkeeping
    def _count(self, items: Sequence[_Item], sign: int) -> None:
        self._queued_sentences += sign * len(items)
        self._queued_tokens += sign * sum(item.tokens for item in items)
        self._queued_cost += sign * sum(item.cost for item in items)

    def _abandon(self, job: _Job) -> None:
        """A caller gave up: drop its queued sentences; abort the running batch if nobody else waits on it."""
        if job.items:
            self._count(job.items, -1)
            job.items.clear()
        jobs = self._clients.get(job.client)
        if jobs is not None and job in jobs:
            jobs.remove(job)
            if not jobs:
                del self._clients[job.client]
        if self._running and all(item.job.future.done() for item in self._running):
            self._abort.set()

    def _oldest(self) -> float:
        return min(job.items[0].enqueued for jobs in self._clients.values() for job in jobs)

    def _full(self) -> bool:
        return (self._queued_sentences >= self.max_sentences or self._queued_tokens >= self.max_tokens
                or (self.max_cost is not None and self._queued_cost >= self.max_cost))

    # ------------------------------------------------------------------ consumer
    async def _consume(self) -> None:
        try:
            while True:
                if not self._clients:
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
        while self._clients and not self._closing and not self._full():
            remaining = self._oldest() + self.max_wait_s - time.perf_counter()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._wakeup.wait()
            except TimeoutError:
                return

    def _take_batch(self) -> list[_Item]:
        """One sentence per client in turn (one per request in turn within a client), up to the batch limits."""
        batch: list[_Item] = []
        tokens = cost = 0
        while self._clients and len(batch) < self.max_sentences:
            client, jobs = next(iter(self._clients.items()))
            job = jobs[0]
            if job.future.done():  # failed by an earlier batch: its other sentences need no model time
                self._abandon(job)
                continue
            item = job.items[0]
            if batch and (tokens + item.tokens > self.max_tokens
                          or (self.max_cost is not None and cost + item.cost > self.max_cost)):
                break
            job.items.popleft()
            self._count([item], -1)
            batch.append(item)
            tokens, cost = tokens + item.tokens, cost + item.cost
            jobs.rotate(-1)  # this request's turn is over
            if not job.items:
                jobs.remove(job)
            self._clients.move_to_end(client)  # and this client's
            if not jobs:
                del self._clients[client]
        return batch

    async def _run(self, batch: list[_Item]) -> None:
        payloads = [item.payload for item in batch]
        started = time.perf_counter()
        waits = [started - item.enqueued for item in batch]
        self._running, self._running_cost = batch, sum(item.cost for item in batch)
        self._abort = abort = threading.Event()
        try:
            results = await asyncio.get_running_loop().run_in_executor(self._executor, self._run_batch, payloads,
                                                                       abort)
            if len(results) != len(payloads):
                raise RuntimeError(f"model returned {len(results)} translations for {len(payloads)} sentences")
        except BatchAborted:
            logger.info("batch of %d sentences on model %s stopped: its callers had gone", len(batch), self.name)
            self._finish_running()
            return
        except Exception as err:
            logger.exception("batch of %d sentences failed on model %s", len(batch), self.name)
            for item in batch:
                if not item.job.future.done():
                    item.job.future.set_exception(err)
            self._finish_running()
            return
        self._finish_running()  # (left set when cancelled: close() fails those callers)
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

    def _finish_running(self) -> None:
        self._running, self._running_cost = [], 0

    def _fail_all(self, err: BaseException) -> None:
        """Fail every caller still waiting: queued sentences and the batch cut off in the model."""
        queued = [item for jobs in self._clients.values() for job in jobs for item in job.items]
        for item in [*self._running, *queued]:
            if not item.job.future.done():
                item.job.future.set_exception(err)
        self._clients.clear()
        self._queued_sentences = self._queued_tokens = self._queued_cost = 0
        self._finish_running()
