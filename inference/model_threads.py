"""Model threads: where predict_fn runs, so that one slow or stuck prediction does not hold up the rest.

One model call runs at a time while calls are quick, so concurrent requests gather into one
micro-batch. When the newest running call has been going for longer than `stall_after`, the next
call starts on another thread (at most `max_threads` calls run at once). A call that outlives
`timeout` is given up: its slot is freed at once, and its thread, which Python cannot stop, goes
back to the pool when the call finally returns.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
from concurrent.futures import Future
from typing import Callable

log = logging.getLogger("convlab.serve")


class _Worker:
    """A daemon thread running one call at a time from its own queue."""

    def __init__(self, name: str):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, function: Callable, args: tuple) -> Future:
        future: Future = Future()
        self._jobs.put((function, args, future))
        return future

    def stop(self) -> None:
        self._jobs.put(None)

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            function, args, future = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(function(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting request
                future.set_exception(exc)


class Slot:
    """The right to run one call, taken by acquire()."""

    def __init__(self, started: float):
        self.started = started
        self.done = False


class ModelThreads:
    def __init__(self, max_threads: int = 4, stall_after: float = 0.1, timeout: float | None = None):
        self.max_threads = max(1, max_threads)
        self.stall_after = stall_after
        self.timeout = timeout
        self.abandoned = 0  # calls given up after `timeout` that had not returned then
        self._running: list[Slot] = []
        self._idle: list[_Worker] = []
        self._changed: asyncio.Event | None = None
        self._count = 0

    @property
    def running(self) -> int:
        """Calls holding a slot now."""
        return len(self._running)

    def _wait_time(self, now: float) -> float:
        """Seconds until a call may start (0: now)."""
        if not self._running:
            return 0.0
        if len(self._running) >= self.max_threads:
            return float("inf")
        newest = max(slot.started for slot in self._running)
        return max(0.0, newest + self.stall_after - now)

    async def acquire(self) -> Slot:
        loop = asyncio.get_running_loop()
        if self._changed is None:
            self._changed = asyncio.Event()
        while (wait := self._wait_time(loop.time())) > 0:
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), None if wait == float("inf") else wait)
            except asyncio.TimeoutError:
                pass
        slot = Slot(loop.time())
        self._running.append(slot)
        return slot

    def release(self, slot: Slot) -> None:
        if not slot.done:
            slot.done = True
            self._running.remove(slot)
            if self._changed is not None:
                self._changed.set()

    async def call(self, slot: Slot, function: Callable, *args):
        """Run function(*args) on a model thread under an acquired slot; asyncio.TimeoutError
        after `timeout` seconds (the call goes on in its thread, the slot is freed)."""
        loop = asyncio.get_running_loop()
        worker = self._idle.pop() if self._idle else self._new_worker()
        future = worker.submit(function, args)
        future.add_done_callback(lambda _: self._returned(loop, worker))
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future, loop=loop), self.timeout)
        except asyncio.TimeoutError:
            self.abandoned += 1
            log.warning("a model call is still running after %g s; it is given up and the next calls go to "
                        "another thread (%d given up so far)", self.timeout, self.abandoned)
            raise
        finally:
            self.release(slot)

    async def run(self, function: Callable, *args):
        return await self.call(await self.acquire(), function, *args)

    def _new_worker(self) -> _Worker:
        self._count += 1
        return _Worker(f"model-{self._count}")

    def _returned(self, loop: asyncio.AbstractEventLoop, worker: _Worker) -> None:
        """Called in the worker thread when its call ends: the thread waits for the next call."""
        def back() -> None:
            if len(self._idle) < self.max_threads:
                self._idle.append(worker)
            else:
                worker.stop()
        try:
            loop.call_soon_threadsafe(back)
        except RuntimeError:  # the loop is closed: the server is stopping
            worker.stop()

    def stop(self) -> None:
        for worker in self._idle:
            worker.stop()
        self._idle.clear()
