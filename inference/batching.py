"""Micro-batching: concurrent requests share one model call.

Requests queue their decoded batches; once the model threads let a call start, one task takes
whatever is queued (up to max_batch images), runs predict_fn once on a model thread, and hands
each request its rows. While the model runs, new requests pile up for the next call, so throughput
grows with concurrency. When other requests are still being read or decoded, the batcher waits for
them at most `max_wait` seconds; alone, a request goes to the model at once. A call that stalls
does not stop the batcher: the model threads start the next call beside it (model_threads.py).
"""
from __future__ import annotations

import asyncio
from typing import Callable

import numpy as np

from .model_threads import ModelThreads


def split_prediction(prediction, start: int, stop: int, rows: int):
    """Rows start:stop of a prediction: a dict whose per-row arrays have `rows` rows (the other
    values, such as the class names, are shared), or an array."""
    if isinstance(prediction, dict):
        return {key: value[start:stop] if isinstance(value, np.ndarray) and value.ndim and len(value) == rows
                else value for key, value in prediction.items()}
    return prediction[start:stop]


class MicroBatcher:
    def __init__(self, predict: Callable[[np.ndarray], object], threads: ModelThreads,
                 max_batch: int = 64, max_wait: float = 0.002):
        self._predict = predict
        self._threads = threads
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.arriving = 0  # requests being read or decoded: they may join the next model call
        self.calls = 0
        self.images = 0
        self._queue: asyncio.Queue | None = None
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._calls: set[asyncio.Task] = set()

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

    async def submit(self, batch: np.ndarray):
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((batch, future))
        self._wakeup.set()
        return await future

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
            items = [(batch, future) for batch, future in await self._collect(first) if not future.done()]
            if not items:
                self._threads.release(slot)
                continue
            task = loop.create_task(self._call(slot, items))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)

    async def _call(self, slot, items: list) -> None:
        batch = items[0][0] if len(items) == 1 else np.concatenate([b for b, _ in items])
        try:
            prediction = await self._threads.call(slot, self._predict, batch)
        except Exception as exc:  # handed to every waiting request, which answers with it
            for _, future in items:
                if not future.done():
                    future.set_exception(exc)
            return
        self.calls += 1
        self.images += len(batch)
        if len(items) == 1:
            if not items[0][1].done():
                items[0][1].set_result(prediction)
            return
        start = 0
        for part, future in items:
            stop = start + len(part)
            if not future.done():
                future.set_result(split_prediction(prediction, start, stop, len(batch)))
            start = stop
