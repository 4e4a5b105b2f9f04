"""Model threads: where predict_fn runs, so that one slow or stuck prediction does not hold up the rest.

One model call runs at a time while calls are quick, so concurrent requests gather into one
micro-batch. When the newest running call has been going for longer than `stall_after`, the next
call starts on another thread. There are never more than `max_threads` threads: a call given up at
its deadline keeps its thread (Python cannot stop it) until it returns, and while every thread is
held the next call waits for one. The deadline belongs to the request (Deadline, made once when
its prediction starts); a call is given up when the last request waiting for it expires, and
counted once in `abandoned`. The threads are `wedged` once every thread is held by a call given up,
or WEDGED_CALLS calls in a row were given up with none returning since: /ping then answers 503.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable

from .errors import PredictionTimeout, ServiceUnavailable

log = logging.getLogger("convlab.serve")

WEDGED_CALLS = 3
STOPPING = "the server is stopping; send the request again (SageMaker routes it to a running instance)"


@dataclass(frozen=True)
class Deadline:
    """When a request's prediction must be answered: `at` on the event loop's clock, `seconds`
    after it started (SAGEMAKER_MODEL_SERVER_TIMEOUT)."""

    at: float
    seconds: float

    def error(self) -> PredictionTimeout:
        return PredictionTimeout(f"the prediction took over {self.seconds:g} s (SAGEMAKER_MODEL_SERVER_TIMEOUT)")


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
        """Each call's future gets `seconds`, the time the call itself took, before its outcome."""
        while (job := self._jobs.get()) is not None:
            function, args, future = job
            if not future.set_running_or_notify_cancel():
                continue
            started = time.perf_counter()
            try:
                result = function(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting requests
                future.seconds = time.perf_counter() - started
                future.set_exception(exc)
            else:
                future.seconds = time.perf_counter() - started
                future.set_result(result)


class Slot:
    """The right to run one call, on the thread reserved for it by acquire()."""

    def __init__(self, started: float, worker: _Worker):
        self.started = started
        self.worker = worker
        self.done = False       # released: the call returned, was given up, or never started
        self.given_up = False


class ModelThreads:
    def __init__(self, max_threads: int = 4, stall_after: float = 0.1):
        self.max_threads = max(1, max_threads)
        self.stall_after = stall_after
        self.abandoned = 0  # calls given up at their deadline
        self.missed = 0     # calls given up since a call last returned
        self.hung = 0       # threads still running a call that was given up
        self._running: list[Slot] = []
        self._idle: list[_Worker] = []
        self._workers = 0
        self._waiting: set[asyncio.Future] = set()
        self._changed: asyncio.Event | None = None
        self._stopped = False

    @property
    def running(self) -> int:
        """Calls holding a slot now (calls given up do not)."""
        return len(self._running)

    @property
    def wedged(self) -> str | None:
        """Why the model no longer answers, or None."""
        if self.hung >= self.max_threads:
            return f"all {self.max_threads} model threads are held by calls that outlived their deadline"
        if self.missed >= WEDGED_CALLS:
            return f"the last {self.missed} model calls were given up at their deadline and none returned since"
        return None

    def _wait_time(self, now: float) -> float:
        """Seconds until a call may start (0: now)."""
        if not self._idle and self._workers >= self.max_threads:
            return float("inf")  # every thread is busy: wait for one to return
        if not self._running:
            return 0.0
        newest = max(slot.started for slot in self._running)
        return max(0.0, newest + self.stall_after - now)

    def _take(self, now: float) -> Slot:
        if self._idle:
            worker = self._idle.pop()
        else:
            self._workers += 1
            worker = _Worker(f"model-{self._workers}")
        slot = Slot(now, worker)
        self._running.append(slot)
        return slot

    def try_acquire(self) -> Slot | None:
        """A slot at once, or None when a call may not start now."""
        now = asyncio.get_running_loop().time()
        return None if self._stopped or self._wait_time(now) > 0 else self._take(now)

    async def acquire(self, deadline: Deadline | None = None) -> Slot:
        """A slot once a call may start; PredictionTimeout at the deadline, ServiceUnavailable on stop()."""
        loop = asyncio.get_running_loop()
        if self._changed is None:
            self._changed = asyncio.Event()
        while not self._stopped and (wait := self._wait_time(loop.time())) > 0:
            if deadline is not None:
                if loop.time() >= deadline.at:
                    raise deadline.error()
                wait = min(wait, deadline.at - loop.time())
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), None if wait == float("inf") else wait)
            except asyncio.TimeoutError:
                pass
        if self._stopped:
            raise ServiceUnavailable(STOPPING)
        return self._take(loop.time())

    def release(self, slot: Slot) -> None:
        """Free a slot whose call did not start, or that was given up."""
        if not slot.done:
            slot.done = True
            self._running.remove(slot)
            self._signal()

    def _signal(self) -> None:
        if self._changed is not None:
            self._changed.set()

    def start(self, slot: Slot, function: Callable, *args) -> Future:
        """Run function(*args) on the slot's thread; wait for it with returned_within() or wait()."""
        return slot.worker.submit(function, args)

    def returned_within(self, slot: Slot, future: Future, seconds: float) -> bool:
        """Block this (the event loop's) thread up to `seconds` for a call: the cheapest hand-off for
        a quick call. True when it returned; else wait() for it."""
        try:
            future.exception(seconds)
        except TimeoutError:
            return False
        self._returned(slot)
        return True

    async def wait(self, slot: Slot, future: Future, deadline: Deadline | None) -> None:
        """Until the call returns (its outcome is in `future`); PredictionTimeout at the deadline
        (the call is given up and counted), ServiceUnavailable on stop()."""
        loop = asyncio.get_running_loop()
        back = loop.create_future()
        self._waiting.add(back)

        def returned(_) -> None:  # in the model thread
            try:
                loop.call_soon_threadsafe(self._back, slot, back)
            except RuntimeError:  # the loop is closed: the server has stopped
                slot.worker.stop()

        future.add_done_callback(returned)
        try:
            timeout = None if deadline is None else max(0.0, deadline.at - loop.time())
            await asyncio.wait_for(asyncio.shield(back), timeout)
        except asyncio.TimeoutError:
            self._give_up(slot, deadline)
            raise deadline.error() from None
        finally:
            self._waiting.discard(back)

    async def run(self, function: Callable, *args, deadline: Deadline | None = None):
        """function(*args) on a model thread, under the stall rule and the deadline."""
        slot = await self.acquire(deadline)
        future = self.start(slot, function, *args)
        await self.wait(slot, future, deadline)
        return future.result()

    def _back(self, slot: Slot, back: asyncio.Future) -> None:
        self._returned(slot)
        if not back.done():
            back.set_result(None)

    def _returned(self, slot: Slot) -> None:
        """On the event loop: a call returned, so its thread is free again."""
        if slot.given_up:
            self.hung -= 1
        self.missed = 0
        slot.given_up = False
        self.release(slot)
        if self._stopped:
            slot.worker.stop()
        else:
            self._idle.append(slot.worker)
        self._signal()

    def _give_up(self, slot: Slot, deadline: Deadline) -> None:
        if slot.done:
            return
        slot.given_up = True
        self.abandoned += 1
        self.missed += 1
        self.hung += 1
        self.release(slot)
        log.warning("a model call is still running after %g s; it is given up and keeps its thread until it "
                    "returns (%d given up so far, %d of %d threads held)", deadline.seconds, self.abandoned,
                    self.hung, self.max_threads)
        if self.wedged:
            log.error("the model is wedged: %s; /ping answers 503 until a call returns", self.wedged)

    def stop(self) -> None:
        """Fail every request waiting for a call or a thread, and let idle threads end."""
        self._stopped = True
        for back in list(self._waiting):
            if not back.done():
                back.set_exception(ServiceUnavailable(STOPPING))
        for worker in self._idle:
            worker.stop()
        self._idle.clear()
        self._signal()
