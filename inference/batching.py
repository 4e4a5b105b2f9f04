"""Micro-batching: concurrent requests share one model call.

Requests queue their decoded batches; once the model threads let a call start, one task takes
whatever is queued (up to max_batch images), runs predict_fn once on a model thread, and hands
each request its rows (split_prediction). While the model runs, new requests pile up for the next call, so throughput
grows with concurrency. A small call (a few images of a fast model, see ServingState) with no
other call running is predicted on the event loop itself: the hand-off to a thread and back costs
more than such a call; when the batcher is idle the requests make that call themselves
(MicroBatcher.predict), without the queue. When other requests are still being read or decoded, the batcher waits for
them at most `max_wait` seconds; alone, a request goes to the model at once. A call that stalls
does not stop the batcher: the model threads start the next call beside it (model_threads.py).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

import numpy as np

from .model_threads import ModelThreads

log = logging.getLogger("convlab.serve")

INLINE_LIMIT = 0.005  # seconds: calls on the event loop longer than this lower inline_images ...
SLOW_CALLS = 3  # ... when this many come in a row


class RowSplitError(ValueError):
    """A row-wise predict_fn's output cannot be split into the rows of each request."""


def _rows(value, rows: int, what: str):
    count = len(value) if isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.ndim) else None
    if count != rows:
        found = f"{count} rows" if count is not None else f"a {type(value).__name__}"
        raise RowSplitError(f"{what} is {found} for {rows} input images; a row_wise predict_fn answers one row "
                            "per image")
    return value


def split_prediction(prediction, start: int, stop: int, rows: int, per_row=None):
    """Rows start:stop of a row-wise prediction of `rows` rows: an array or list is split as a
    whole; of a dict, only the keys in `per_row` (predict_fn.per_row_outputs), the other values
    (such as the class names) go to every request as they are. A dict without `per_row` is
    refused: which of its values hold rows cannot be told from their lengths."""
    if isinstance(prediction, dict):
        if not per_row:
            raise RowSplitError("predict_fn is row_wise and returned a dict: say which of its keys hold one row "
                                "per input image, e.g. predict_fn.per_row_outputs = (\"probabilities\",); the "
                                f"other values go to every request as they are (keys: {sorted(map(str, prediction))})")
        split = dict(prediction)
        for key in per_row:
            if key not in prediction:
                raise RowSplitError(f"predict_fn.per_row_outputs names {key!r}, which its answer lacks "
                                    f"(keys: {sorted(map(str, prediction))})")
            split[key] = _rows(prediction[key], rows, f"predict_fn output {key!r}")[start:stop]
        return split
    return _rows(prediction, rows, "the prediction of predict_fn")[start:stop]


class MicroBatcher:
    def __init__(self, predict: Callable[[np.ndarray], object], threads: ModelThreads,
                 max_batch: int = 64, max_wait: float = 0.002, timeout: float | None = None, per_row=None):
        self._predict = predict
        self._threads = threads
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.timeout = timeout  # seconds from submit() to the answer; then asyncio.TimeoutError
        self.per_row = tuple(per_row) if per_row else None  # predict_fn.per_row_outputs
        self.arriving = 0  # requests being read or decoded: they may join the next model call
        # Calls of at most this many images run on the event loop itself while no other call runs
        # (0: never); set from the model's measured speed (ServingState), lowered when a call is slow.
        self.inline_images = 0
        self._slow_inline = 0  # inline calls in a row that took longer than INLINE_LIMIT
        self.calls = 0
        self.images = 0
        self._queue: asyncio.Queue | None = None
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._calls: set[asyncio.Task] = set()
        self._gathering: list | None = None  # [images, items] of the request leading an inline call

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        for task in [self._task, *self._calls]:
            if task:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass

    def submit(self, batch: np.ndarray) -> asyncio.Future:
        """A future of the batch's prediction rows; it fails with asyncio.TimeoutError after
        `timeout` seconds (one timer per request, cancelled when the answer comes)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        timer = loop.call_later(self.timeout, _expire, future) if self.timeout else None
        self._queue.put_nowait((batch, future, timer))
        self._wakeup.set()
        return future

    async def _collect(self, first) -> list:
        loop = asyncio.get_running_loop()
        items = [first]
        size = len(first[0])
        deadline = loop.time() + self.max_wait
        while size < self.max_batch:
            if not self._queue.empty():
                item = self._queue.get_nowait()
                items.append(item)
                size += len(item[0])
                continue
            remaining = deadline - loop.time()
            if self.arriving <= 0 or remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                break
        return items

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            slot = await self._threads.acquire()  # requests queued meanwhile join this call
            items = [item for item in await self._collect(first) if not item[1].done()]
            if not items:
                self._threads.release(slot)
                continue
            if self._threads.running == 1 and sum(len(item[0]) for item in items) <= self.inline_images:
                try:
                    self._predict_inline(items)
                finally:
                    self._threads.release(slot)
                continue
            task = loop.create_task(self._call(slot, items))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)

    async def predict(self, batch: np.ndarray):
        """The batch's prediction rows. A small batch while no model call runs and nothing is
        queued is predicted on the event loop by the request itself (no queue, no batcher task):
        the first such request leads, lets the requests ready in the same loop turn join it (one
        turn of the loop), and makes one call for all of them. Anything else goes through the
        queue (submit)."""
        if len(batch) > self.inline_images or self._threads.running or not self._queue.empty():
            return await self.submit(batch)
        gathering = self._gathering
        if gathering is not None and gathering[0] + len(batch) <= self.inline_images:
            future = asyncio.get_running_loop().create_future()
            gathering[0] += len(batch)
            gathering[1].append((batch, future, None))
            return await future
        return await self._lead(batch)

    async def _lead(self, batch: np.ndarray):
        gathering = self._gathering = [len(batch), [(batch, None, None)]]
        try:
            await asyncio.sleep(0)  # the requests ready in this turn of the loop join
        except asyncio.CancelledError:
            self._requeue(gathering[1][1:])
            raise
        finally:
            if self._gathering is gathering:
                self._gathering = None
        items = gathering[1]
        stacked = _stacked(items)
        try:
            prediction = self._timed_predict(stacked)
        except Exception as exc:
            _fail(items[1:], exc)
            raise
        self._deliver(items, stacked, prediction)
        return split_prediction(prediction, 0, len(batch), len(stacked), self.per_row)

    def _requeue(self, items: list) -> None:
        for item in items:
            self._queue.put_nowait(item)
        if items:
            self._wakeup.set()

    def _timed_predict(self, batch: np.ndarray):
        """A call on the event loop. SLOW_CALLS calls in a row slower than INLINE_LIMIT (not one
        call that another process's load delayed) halve what runs inline from then on."""
        started = time.perf_counter()
        try:
            return self._predict(batch)
        finally:
            elapsed = time.perf_counter() - started
            self._slow_inline = self._slow_inline + 1 if elapsed > INLINE_LIMIT else 0
            if self._slow_inline >= SLOW_CALLS:
                self._slow_inline = 0
                self.inline_images //= 2
                log.info("%d model calls in a row took over %g ms on the event loop (the last: %d image(s), %.1f ms); "
                         "calls of more than %d image(s) go to model threads from now on", SLOW_CALLS,
                         INLINE_LIMIT * 1000, len(batch), elapsed * 1000, self.inline_images)

    def _predict_inline(self, items: list) -> None:
        """A small call with nothing else running: on the event loop, without the hand-off to a
        model thread and back."""
        batch = _stacked(items)
        try:
            prediction = self._timed_predict(batch)
        except Exception as exc:  # handed to every waiting request, which answers with it
            _fail(items, exc)
            return
        self._deliver(items, batch, prediction)

    async def _call(self, slot, items: list) -> None:
        batch = _stacked(items)
        try:
            prediction = await self._threads.call(slot, self._predict, batch)
        except Exception as exc:  # handed to every waiting request, which answers with it
            _fail(items, exc)
            return
        self._deliver(items, batch, prediction)

    def _deliver(self, items: list, batch: np.ndarray, prediction) -> None:
        self.calls += 1
        self.images += len(batch)
        start = 0
        try:
            for item in items:
                stop = start + len(item[0])
                _answer(item, split_prediction(prediction, start, stop, len(batch), self.per_row))
                start = stop
        except RowSplitError as exc:
            _fail(items, exc)


def _stacked(items: list) -> np.ndarray:
    return items[0][0] if len(items) == 1 else np.concatenate([item[0] for item in items])


def _answer(item, result) -> None:
    _, future, timer = item
    if timer:
        timer.cancel()
    if future is not None and not future.done():  # None: the leading request, answered by return
        future.set_result(result)


def _fail(items: list, exc: BaseException) -> None:
    for _, future, timer in items:
        if timer:
            timer.cancel()
        if future is not None and not future.done():
            future.set_exception(exc)


def _expire(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(asyncio.TimeoutError())
