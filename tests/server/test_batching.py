"""MicroBatcher on its own, with a recording stand-in for the model: grouping, limits, order, failures, shutdown."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from vqnat_server.batching import BatchAborted, BatcherClosed, MicroBatcher


class RecordingModel:
    """Upper-cases each sentence; records every batch and the thread it ran on."""

    def __init__(self, delay_s: float = 0.0, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.threads: set[str] = set()
        self.delay_s, self.fail_on = delay_s, fail_on

    def __call__(self, texts: list[str], abort: threading.Event) -> list[str]:
        self.batches.append(list(texts))
        self.threads.add(threading.current_thread().name)
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail_on is not None and self.fail_on in texts:
            raise RuntimeError("model failure")
        return [t.upper() for t in texts]


@pytest.fixture
def executor():
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="model") as pool:
        yield pool


def run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_share_one_batch_and_get_their_own_results(executor):
    model = RecordingModel()

    async def main():
        batcher = MicroBatcher("m", model, executor, max_sentences=64, max_wait_s=0.05)
        requests = [[f"r{r}s{s}" for s in range(r % 3 + 1)] for r in range(10)]
        results = await asyncio.gather(*(batcher.submit(texts) for texts in requests))
        await batcher.close()
        return requests, results

    requests, results = run(main())
    assert results == [[t.upper() for t in texts] for texts in requests]
    assert len(model.batches) == 1 and len(model.batches[0]) == sum(map(len, requests))
    assert model.threads == {"model_0"}  # never on the event loop's thread


def test_batches_close_at_max_sentences_and_max_tokens(executor):
    model = RecordingModel()

    async def main(**limits):
        batcher = MicroBatcher("m", model, executor, max_wait_s=0.05, **limits)
        out = await asyncio.gather(*(batcher.submit([f"{i:03d}"], tokens=[3]) for i in range(10)))
        await batcher.close()
        return out

    assert run(main(max_sentences=4)) == [[f"{i:03d}"] for i in range(10)]
    assert [len(b) for b in model.batches] == [4, 4, 2]
    model.batches.clear()
    run(main(max_sentences=64, max_tokens=7))  # 7 tokens fit two 3-token sentences
    assert [len(b) for b in model.batches] == [2, 2, 2, 2, 2]


def test_a_request_larger_than_a_batch_is_split_and_reassembled_in_order(executor):
    model = RecordingModel()

    async def main():
        batcher = MicroBatcher("m", model, executor, max_sentences=3, max_wait_s=0.0)
        out = await batcher.submit([f"s{i}" for i in range(8)])
        await batcher.close()
        return out

    assert run(main()) == [f"S{i}" for i in range(8)]
    assert [len(b) for b in model.batches] == [3, 3, 2]


def test_a_lone_request_waits_at_most_max_wait(executor):
    model = RecordingModel()

    async def main():
        batcher = MicroBatcher("m", model, executor, max_wait_s=0.02)
        start = time.perf_counter()
        await batcher.submit(["a"])
        elapsed = time.perf_counter() - start
        await batcher.close()
        return elapsed

    assert run(main()) < 1.0  # a generous bound: the batch closed on its deadline, not on a full batch


def test_the_event_loop_keeps_running_during_a_model_call(executor):
    model = RecordingModel(delay_s=0.3)

    async def main():
        batcher = MicroBatcher("m", model, executor, max_wait_s=0.0)
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        tick_task = asyncio.create_task(ticker())
        await batcher.submit(["slow"])
        tick_task.cancel()
        await batcher.close()
        return ticks

    assert run(main()) >= 5  # about 30 ticks when the loop is free; 0 if the model call blocked it


def test_requests_arriving_while_the_model_is_busy_form_the_next_batch(executor):
    model = RecordingModel(delay_s=0.2)

    async def main():
        batcher = MicroBatcher("m", model, executor, max_wait_s=0.0)
        first = asyncio.create_task(batcher.submit(["first"]))
        await asyncio.sleep(0.05)  # the first batch is running now
        rest = await asyncio.gather(*(batcher.submit([f"r{i}"]) for i in range(5)))
        await first
        await batcher.close()
        return rest

    assert run(main()) == [[f"R{i}"] for i in range(5)]
    assert model.batches == [["first"], [f"r{i}" for i in range(5)]]


def test_a_model_failure_fails_only_that_batch(executor):
    model = RecordingModel(fail_on="bad")

    async def main():
        batcher = MicroBatcher("m", model, executor, max_sentences=1, max_wait_s=0.0)
        results = await asyncio.gather(batcher.submit(["bad"]), batcher.submit(["good"]), return_exceptions=True)
        await batcher.close()
        return results

    bad, good = run(main())
    assert isinstance(bad, RuntimeError) and good == ["GOOD"]


def test_cancelled_callers_are_skipped(executor):
    model = RecordingModel(delay_s=0.1)

    async def main():
        batcher = MicroBatcher("m", model, executor, max_sentences=1, max_wait_s=0.0)
        busy = asyncio.create_task(batcher.submit(["busy"]))
        await asyncio.sleep(0.02)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(batcher.submit(["gave up"]), 0.01)
        kept = await batcher.submit(["kept"])
        await busy
        await batcher.close()
        return kept

    assert run(main()) == ["KEPT"]
    assert ["gave up"] not in model.batches


def test_close_drains_the_queue_then_refuses_new_work(executor):
    model = RecordingModel(delay_s=0.05)

    async def main():
        batcher = MicroBatcher("m", model, executor, max_sentences=2, max_wait_s=0.0)
        pending = [asyncio.create_task(batcher.submit([f"s{i}"])) for i in range(5)]
        await asyncio.sleep(0)
        await batcher.close()
        drained = [task.result() for task in pending]
        with pytest.raises(BatcherClosed):
            await batcher.submit(["late"])
        return drained

    assert run(main()) == [[f"S{i}"] for i in range(5)]


def test_close_with_a_stuck_model_fails_the_waiting_callers(executor):
    model = RecordingModel(delay_s=0.5)

    async def main():
        batcher = MicroBatcher("m", model, executor, max_sentences=1, max_wait_s=0.0)
        pending = [asyncio.create_task(batcher.submit([f"s{i}"])) for i in range(3)]
        await asyncio.sleep(0.05)
        await batcher.close(timeout_s=0.1)
        return await asyncio.gather(*pending, return_exceptions=True)

    results = run(main())
    assert any(isinstance(r, (BatcherClosed, asyncio.CancelledError)) for r in results)
    assert all(r == ["S0"] or isinstance(r, (BatcherClosed, asyncio.CancelledError)) for r in results)


def test_bad_limits_are_refused(executor):
    with pytest.raises(ValueError, match="max_sentences"):
        MicroBatcher("m", RecordingModel(), executor, max_sentences=0)


def test_batches_close_at_max_cost(executor):
    model = RecordingModel()

    async def main():
        batcher = MicroBatcher("m", model, executor, max_wait_s=0.05, max_cost=10)
        await asyncio.gather(*(batcher.submit([f"s{i}"], costs=[4]) for i in range(5)))
        await batcher.close()

    run(main())
    assert [len(b) for b in model.batches] == [2, 2, 1]  # 4 + 4 fit in 10, a third would not


def hold(executor) -> threading.Event:
    """Occupy the model thread until the returned event is set: whatever is submitted meanwhile queues up."""
    release = threading.Event()
    executor.submit(release.wait, 30)
    return release


def test_clients_take_turns_so_a_large_request_does_not_hold_up_small_ones(executor):
    model = RecordingModel()

    async def main():
        batcher = MicroBatcher("m", model, executor, max_sentences=4, max_wait_s=0.0)
        release = hold(executor)
        big = asyncio.create_task(batcher.submit([f"big{i}" for i in range(12)], client="a"))
        await asyncio.sleep(0)
        small = [asyncio.create_task(batcher.submit([f"{c}{i}" for i in range(2)], client=c)) for c in "bc"]
        await asyncio.sleep(0.05)
        release.set()
        results = await asyncio.gather(big, *small)
        await batcher.close()
        return results

    big, b, c = run(main())
    assert big == [f"BIG{i}" for i in range(12)] and b == ["B0", "B1"] and c == ["C0", "C1"]
    first, second = model.batches[0], model.batches[1]
    # the first batch closed on the big request alone (it was alone in the queue); then every client in turn
    assert first == ["big0", "big1", "big2", "big3"]
    assert second == ["big4", "b0", "c0", "big5"]
    assert {"b1", "c1"} <= set(model.batches[2])  # the small requests are done by the third batch, not the fourth


def test_requests_of_one_client_take_turns_too(executor):
    model = RecordingModel()

    async def main():
        batcher = MicroBatcher("m", model, executor, max_sentences=4, max_wait_s=0.0)
        release = hold(executor)
        jobs = [asyncio.create_task(batcher.submit([f"{r}{i}" for i in range(4)], client="same")) for r in "xyz"]
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.gather(*jobs)
        await batcher.close()

    run(main())
    assert model.batches[0] == ["x0", "y0", "z0", "x1"]


class AbortableModel:
    """Runs until its batch is aborted (or 30 s pass), as a long search stopped between steps would."""

    def __init__(self) -> None:
        self.started, self.aborted = threading.Event(), threading.Event()

    def __call__(self, texts: list[str], abort: threading.Event) -> list[str]:
        self.started.set()
        if abort.wait(30):
            self.aborted.set()
            raise BatchAborted("stopped")
        return [t.upper() for t in texts]


def test_a_running_batch_stops_once_all_its_callers_have_gone(executor):
    model = AbortableModel()

    async def main():
        batcher = MicroBatcher("m", model, executor, max_wait_s=0.0)
        caller = asyncio.create_task(batcher.submit(["long"]))
        await asyncio.to_thread(model.started.wait, 30)
        caller.cancel()
        await asyncio.gather(caller, return_exceptions=True)
        stopped = await asyncio.to_thread(model.aborted.wait, 30)
        pending = batcher.pending_cost
        await batcher.close()
        return stopped, pending

    stopped, pending = run(main())
    assert stopped and pending == 0


def test_a_running_batch_goes_on_while_one_caller_still_waits(executor):
    model = RecordingModel(delay_s=0.2)

    async def main():
        batcher = MicroBatcher("m", model, executor, max_wait_s=0.05)
        leaving = asyncio.create_task(batcher.submit(["leaving"], client="a"))
        staying = asyncio.create_task(batcher.submit(["staying"], client="b"))
        await asyncio.sleep(0.1)  # both are in the running batch now
        leaving.cancel()
        result = await staying
        await batcher.close()
        return result

    assert run(main()) == ["STAYING"]
