"""Micro-batching: concurrent requests share one model call.

Requests queue their decoded batches; once the model threads let a call start, one task takes
whatever is queued (up to max_batch images), runs predict_fn once on a model thread, and hands
each request its rows (split_prediction). While the model runs, new requests pile up for the next
call, so throughput grows with concurrency. When other requests are still being read or decoded,
the batcher waits for them at most `max_wait` seconds; alone, a request goes to the model at once.

A small call (a few images of a fast model, see ServingState) with no other call running is
waited for by the event loop itself for up to INLINE_WAIT, which costs less than an asynchronous
hand-off and back; a call that takes longer is then awaited like any other, so a hung call never
blocks the loop. When the batcher is idle the requests make that call themselves
(MicroBatcher.predict), without the queue; the leading request holds the call's slot, so it never
runs beside another call. Every request keeps the Deadline it came with, through joining, the
queue and requeueing; stop() answers every request still waiting with a 503.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

import numpy as np

from .context import batch_context
from .errors import ServiceUnavailable
from .model_threads import STOPPING, Deadline, ModelThreads, Slot

log = logging.getLogger("convlab.serve")

INLINE_WAIT = 0.005  # seconds the event loop waits for a small call; calls taking longer lower inline_images ...
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


class _Request:
    __slots__ = ("batch", "future", "timer", "deadline", "context")

    def __init__(self, batch: np.ndarray, future: asyncio.Future, deadline: Deadline | None, context):
        self.batch, self.future, self.timer, self.deadline, self.context = batch, future, None, deadline, context


class MicroBatcher:
    def __init__(self, predict: Callable[[np.ndarray, object], object], threads: ModelThreads,
                 max_batch: int = 64, max_wait: float = 0.002, timeout: float | None = None, per_row=None):
        self._predict = predict
        self._threads = threads
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.timeout = timeout  # seconds from a request's prediction start to its answer (Deadline)
        self.per_row = tuple(per_row) if per_row else None  # predict_fn.per_row_outputs
        self.arriving = 0  # requests being read or decoded: they may join the next model call
        # Calls of at most this many images are waited for on the event loop while no other call
        # runs (0: never); set from the model's measured speed (ServingState), lowered when slow.
        self.inline_images = 0
        self._slow_inline = 0  # inline calls in a row that took longer than INLINE_WAIT
        self.calls = 0
        self.images = 0
        self._queue: asyncio.Queue | None = None
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._calls: set[asyncio.Task] = set()
        self._waiting: set[_Request] = set()  # every request not answered yet
        self._gathering: list | None = None  # [images, requests] of the request leading an inline call
        self._stopped = False

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        """Answer every request still waiting with ServiceUnavailable (503), then end the tasks."""
        self._stopped = True
        for request in list(self._waiting):
            self._fail([request], ServiceUnavailable(STOPPING))
        for task in [self._task, *self._calls]:
            if task:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass

    def deadline(self) -> Deadline | None:
        return Deadline(asyncio.get_running_loop().time() + self.timeout, self.timeout) if self.timeout else None

    def _request(self, batch: np.ndarray, deadline: Deadline | None, context=None) -> _Request:
        if self._stopped:
            raise ServiceUnavailable(STOPPING)
        loop = asyncio.get_running_loop()
        request = _Request(batch, loop.create_future(), deadline, context)
        if deadline is not None:
            request.timer = loop.call_at(deadline.at, self._expire, request)
        self._waiting.add(request)
        return request

    def submit(self, batch: np.ndarray, deadline: Deadline | None = None, context=None) -> asyncio.Future:
        """A future of the batch's prediction rows; it fails with PredictionTimeout at the deadline
        (default: `timeout` from now). `context`: the request's, for predict_fn (batch_context)."""
        request = self._request(batch, deadline or self.deadline(), context)
        self._queue.put_nowait(request)
        self._wakeup.set()
        return request.future

    async def predict(self, batch: np.ndarray, deadline: Deadline | None = None, context=None):
        """The batch's prediction rows. A small batch while no model call runs and nothing is
        queued is predicted by the request itself (no queue, no batcher task): the first such
        request takes the slot and leads, lets the requests ready in the same loop turn join it
        (one turn of the loop), and makes one call for all of them. Anything else goes through the
        queue (submit)."""
        deadline = deadline or self.deadline()
        gathering = self._gathering
        if gathering is not None and gathering[0] + len(batch) <= self.inline_images:
            request = self._request(batch, deadline, context)
            gathering[0] += len(batch)
            gathering[1].append(request)
            return await request.future
        if len(batch) > self.inline_images or self._threads.running or not self._queue.empty():
            return await self.submit(batch, deadline, context)
        slot = self._threads.try_acquire()
        if slot is None:
            return await self.submit(batch, deadline, context)
        return await self._lead(slot, batch, deadline, context)

    async def _lead(self, slot: Slot, batch: np.ndarray, deadline: Deadline | None, context):
        first = self._request(batch, deadline, context)
        gathering = self._gathering = [len(batch), [first]]
        try:
            await asyncio.sleep(0)  # the requests ready in this turn of the loop join
        except asyncio.CancelledError:
            self._threads.release(slot)
            self._waiting.discard(first)
            if first.timer:
                first.timer.cancel()
            first.future.cancel()
            self._requeue(gathering[1][1:])
            raise
        finally:
            if self._gathering is gathering:
                self._gathering = None
        self._start(slot, gathering[1], inline=True)
        return await first.future

    def _requeue(self, requests: list) -> None:
        for request in requests:
            self._queue.put_nowait(request)  # with its own deadline and timer
        if requests:
            self._wakeup.set()

    async def _collect(self, first) -> list:
        loop = asyncio.get_running_loop()
        requests = [first]
        size = len(first.batch)
        deadline = loop.time() + self.max_wait
        while size < self.max_batch:
            if not self._queue.empty():
                request = self._queue.get_nowait()
                requests.append(request)
                size += len(request.batch)
                continue
            remaining = deadline - loop.time()
            if self.arriving <= 0 or remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                break
        return requests

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            try:
                slot = await self._threads.acquire()  # requests queued meanwhile join this call
            except ServiceUnavailable as exc:
                self._fail([first], exc)
                continue
            requests = [request for request in await self._collect(first) if not request.future.done()]
            if not requests:
                self._threads.release(slot)
                continue
            inline = self._threads.running == 1 and sum(len(r.batch) for r in requests) <= self.inline_images
            self._start(slot, requests, inline)

    def _start(self, slot: Slot, requests: list, inline: bool) -> None:
        """One model call for `requests`: waited for on the loop up to INLINE_WAIT when `inline`,
        else (or when it takes longer) by a task of its own."""
        batch = _stacked(requests)
        future = self._threads.start(slot, self._predict, batch, batch_context([r.context for r in requests]))
        if inline and self._threads.returned_within(slot, future, INLINE_WAIT):
            self._timed(future, len(batch))
            self._settle(requests, batch, future)
            return
        task = asyncio.get_running_loop().create_task(self._finish(slot, requests, batch, future, inline))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    async def _finish(self, slot: Slot, requests: list, batch: np.ndarray, future, inline: bool = False) -> None:
        deadlines = [request.deadline for request in requests]
        latest = None if None in deadlines else max(deadlines, key=lambda d: d.at)  # nobody waits after it
        try:
            await self._threads.wait(slot, future, latest)
        except Exception as exc:  # the deadline or stop(): handed to every waiting request
            self._fail(requests, exc)
            return
        if inline:
            self._timed(future, len(batch))
        self._settle(requests, batch, future)

    def _timed(self, future, images: int) -> None:
        """SLOW_CALLS inline calls in a row whose predict_fn took longer than INLINE_WAIT (not one
        call that another process's load delayed, nor a thread that started late) halve what is
        waited for on the loop from then on."""
        slow = getattr(future, "seconds", 0.0) > INLINE_WAIT
        self._slow_inline = self._slow_inline + 1 if slow else 0
        if self._slow_inline >= SLOW_CALLS:
            self._slow_inline = 0
            self.inline_images //= 2
            log.info("%d model calls in a row took over %g ms (the last: %d image(s)); calls of more than %d "
                     "image(s) are no longer waited for on the event loop", SLOW_CALLS, INLINE_WAIT * 1000,
                     images, self.inline_images)

    def _settle(self, requests: list, batch: np.ndarray, future) -> None:
        error = future.exception()
        if error is not None:  # handed to every waiting request, which answers with it
            self._fail(requests, error)
            return
        self._deliver(requests, batch, future.result())

    def _deliver(self, requests: list, batch: np.ndarray, prediction) -> None:
        self.calls += 1
        self.images += len(batch)
        start = 0
        try:
            for request in requests:
                stop = start + len(request.batch)
                self._answer(request, split_prediction(prediction, start, stop, len(batch), self.per_row))
                start = stop
        except RowSplitError as exc:
            self._fail(requests, exc)

    def _answer(self, request: _Request, result) -> None:
        self._waiting.discard(request)
        if request.timer:
            request.timer.cancel()
        if not request.future.done():
            request.future.set_result(result)

    def _fail(self, requests: list, exc: BaseException) -> None:
        for request in requests:
            self._waiting.discard(request)
            if request.timer:
                request.timer.cancel()
            if not request.future.done():
                request.future.set_exception(exc)

    def _expire(self, request: _Request) -> None:
        self._fail([request], request.deadline.error())


def _stacked(requests: list) -> np.ndarray:
    return requests[0].batch if len(requests) == 1 else np.concatenate([request.batch for request in requests])
