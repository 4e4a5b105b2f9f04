"""The micro-batcher on a real event loop: requests ready in the same turn share one model call
made on the loop, each gets its own rows, and a leading request that is cancelled leaves the
others answered through the queue."""
from __future__ import annotations

import asyncio
import threading
import time

import numpy as np

from inference.batching import MicroBatcher
from inference.model_threads import ModelThreads


def row_sums(calls: list):
    def predict(batch: np.ndarray, context=None) -> np.ndarray:
        calls.append(len(batch))
        return batch.reshape(len(batch), -1).sum(axis=1, keepdims=True)
    return predict


def batches(count: int) -> list[np.ndarray]:
    return [np.full((1, 2, 2, 1), float(i)) for i in range(count)]


async def with_batcher(inline_images: int, body):
    calls: list[int] = []
    threads = ModelThreads(2, 0.1)
    batcher = MicroBatcher(row_sums(calls), threads, max_batch=64, max_wait=0.002, timeout=5.0)
    batcher.start()
    batcher.inline_images = inline_images
    try:
        return await body(batcher), calls
    finally:
        await batcher.stop()
        threads.stop()


def test_requests_ready_together_share_one_call_on_the_loop():
    async def body(batcher):
        return await asyncio.gather(*[batcher.predict(b) for b in batches(6)])

    answers, calls = asyncio.run(with_batcher(8, body))
    assert [float(a[0, 0]) for a in answers] == [4.0 * i for i in range(6)]
    assert calls == [6]


def test_past_the_inline_size_the_rest_go_through_the_queue():
    async def body(batcher):
        return await asyncio.gather(*[batcher.predict(b) for b in batches(6)])

    answers, calls = asyncio.run(with_batcher(4, body))
    assert [float(a[0, 0]) for a in answers] == [4.0 * i for i in range(6)]
    assert calls[0] == 4 and sum(calls) == 6


def test_one_request_alone_is_predicted_at_once():
    async def body(batcher):
        first = await batcher.predict(batches(1)[0])
        second = await batcher.predict(np.ones((3, 2, 2, 1)))
        return first, second

    (first, second), calls = asyncio.run(with_batcher(8, body))
    assert float(first[0, 0]) == 0.0 and second.tolist() == [[4.0]] * 3
    assert calls == [1, 3]


def test_a_cancelled_leader_leaves_the_others_answered():
    async def body(batcher):
        leader = asyncio.ensure_future(batcher.predict(batches(1)[0]))
        followers = [asyncio.ensure_future(batcher.predict(b)) for b in batches(4)[1:]]
        await asyncio.sleep(0)  # the leader waits one turn of the loop, the others join it
        assert batcher._gathering is not None and len(batcher._gathering[1]) == 4
        leader.cancel()
        return await asyncio.wait_for(asyncio.gather(*followers), 5), leader.cancelled()

    (answers, cancelled), calls = asyncio.run(with_batcher(8, body))
    assert cancelled
    assert [float(a[0, 0]) for a in answers] == [4.0, 8.0, 12.0]
    assert sum(calls) == 3


def run(body):
    return asyncio.run(body())


def test_followers_of_a_cancelled_leader_keep_their_deadline():
    """Requests that joined a leader and went back to the queue when it was cancelled still time
    out at their own deadline, though the call they end up in hangs."""
    release = threading.Event()

    def hangs(batch, context=None):
        release.wait(10)
        return batch.reshape(len(batch), -1).sum(axis=1, keepdims=True)

    async def body():
        threads = ModelThreads(2, 0.1)
        batcher = MicroBatcher(hangs, threads, timeout=0.5)
        batcher.start()
        batcher.inline_images = 8
        leader = asyncio.ensure_future(batcher.predict(batches(1)[0]))
        followers = [asyncio.ensure_future(batcher.predict(b)) for b in batches(4)[1:]]
        await asyncio.sleep(0)
        leader.cancel()
        started = time.perf_counter()
        try:
            results = await asyncio.wait_for(asyncio.gather(*followers, return_exceptions=True), 5)
            return results, time.perf_counter() - started
        finally:
            release.set()
            await batcher.stop()
            threads.stop()

    results, elapsed = run(body)
    assert [getattr(result, "status", None) for result in results] == [504, 504, 504], results
    assert elapsed < 2


def test_stop_answers_every_waiting_request():
    """stop() with a call hanging on the model thread and requests queued behind it: every one is
    answered 503."""
    release = threading.Event()

    def hangs(batch, context=None):
        release.wait(10)
        return batch.reshape(len(batch), -1).sum(axis=1, keepdims=True)

    async def body():
        threads = ModelThreads(1, 10.0)
        batcher = MicroBatcher(hangs, threads, timeout=30)
        batcher.start()
        waiting = [asyncio.ensure_future(batcher.predict(batches(1)[0]))]
        await asyncio.sleep(0.1)  # that one is on the model thread now
        waiting += [asyncio.ensure_future(batcher.predict(b)) for b in batches(3)[1:]]
        await asyncio.sleep(0.1)
        try:
            await batcher.stop()
            return await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 2)
        finally:
            release.set()
            threads.stop()

    results = run(body)
    assert [getattr(result, "status", None) for result in results] == [503, 503, 503], results


def test_a_leader_on_the_loop_and_a_thread_call_never_run_at_once():
    """One call at a time while none stalls: the request leading a call made from the event loop
    holds the same slot as a call on a model thread."""
    lock = threading.Lock()
    active, peak = [0], [0]

    def counted(batch, context=None):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return batch.reshape(len(batch), -1).sum(axis=1, keepdims=True)

    async def body():
        threads = ModelThreads(2, 10.0)
        batcher = MicroBatcher(counted, threads, timeout=5)
        batcher.start()
        batcher.inline_images = 4
        try:
            leader = asyncio.ensure_future(batcher.predict(np.ones((1, 2, 2, 1))))
            await asyncio.sleep(0)  # the leader gathers the requests of this turn: it holds the slot already
            assert batcher._gathering is not None and threads.running == 1
            large = asyncio.ensure_future(batcher.predict(np.ones((8, 2, 2, 1))))  # over the inline size
            return await asyncio.wait_for(asyncio.gather(leader, large), 5)
        finally:
            await batcher.stop()
            threads.stop()

    small, large = run(body)
    assert small.tolist() == [[4.0]] and large.tolist() == [[4.0]] * 8
    assert peak[0] == 1
