"""Batch transform requests answered by the handler in this process.

A pool of threads reads each object, splits it into requests and runs input_fn on them. Requests
whose decoded batch has the model's input shape, when predict_fn is row-wise, wait for one stacked
predict_fn call of at least `batch_size` images (as the server's micro-batcher joins concurrent
requests); the others are predicted alone. Every predict_fn call (and the output_fn of its
requests) runs, in order, on one model thread, so the next batch is read and decoded while the
last one is predicted. output_fn encodes each request's rows with its own
context, so every response is the body the server would answer for that request.
"""
from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from deploy.invokers import Handler
from deploy.records import TransformOptions
from deploy.stores import Item
from deploy.answers import Answer, Failure, assembled, failure_of, in_order, read_requests
from inference.batching import RowSplitError, split_prediction
from inference.context import batch_context

log = logging.getLogger(__name__)


@dataclass
class _Request:
    item: Item
    context: Any
    data: Any = None
    response: tuple[bytes, str] | None = None
    error: Failure | None = None


@dataclass
class _Object:
    item: Item
    requests: list[_Request] = field(default_factory=list)
    failure: Failure | None = None

    @property
    def answered(self) -> bool:
        return self.failure is not None or all(r.response or r.error for r in self.requests)

    def answer(self, options: TransformOptions) -> Answer:
        failure = self.failure or next((r.error for r in self.requests if r.error), None)
        if failure:
            return Answer(self.item, failure=failure, requests=len(self.requests))
        return assembled(self.item, [r.response for r in self.requests], options)


def answers_in_process(handler: Handler, source, items: list[Item], options: TransformOptions,
                       batch_size: int, workers: int, chunk: int = 1) -> Iterator[Answer]:
    def decode(item: Item) -> _Object:
        found = read_requests(source, item, options)
        if isinstance(found, Failure):
            return _Object(item, failure=found)
        bodies, content_type = found
        obj = _Object(item)
        for body in bodies:
            request = _Request(item, handler.context(content_type, options.accept))
            try:
                request.data = handler.decode(body, content_type, request.context)
            except Exception as exc:  # noqa: BLE001 - recorded per object, with the handler's status
                return _Object(item, failure=failure_of(item, "decode", exc))
            obj.requests.append(request)
        return obj

    waiting: deque[_Object] = deque()
    batch: list[_Request] = []
    images = 0
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="transform-get") as pool, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="transform-predict") as model:
        calls: deque[Future] = deque()  # model jobs in submission order: one batch predicts while the next is read
        for obj in in_order(pool, items, decode, max(batch_size * 2, workers * 2), chunk):
            for request in obj.requests:
                if handler.batchable(request.data):
                    batch.append(request)
                    images += len(request.data)
                else:
                    calls.append(model.submit(_answer_alone, handler, request))
            waiting.append(obj)
            if images >= batch_size:
                _settle(calls, keep=0)  # the previous batch: at most one waits while one is read
                calls.append(model.submit(_answer_batch, handler, batch))
                batch, images = [], 0
            _settle(calls, keep=len(calls))
            yield from _finished(waiting, options)
        calls.append(model.submit(_answer_batch, handler, batch))
        _settle(calls, keep=0)
        yield from _finished(waiting, options, everything=True)


def _settle(calls: deque, keep: int) -> None:
    """Collect the finished model jobs at the front, and wait for the oldest until `keep` remain.
    Failures are recorded on the requests themselves; an exception here is a bug, raised."""
    while calls and (len(calls) > keep or calls[0].done()):
        calls.popleft().result()


def _finished(waiting: deque[_Object], options: TransformOptions, everything: bool = False) -> Iterator[Answer]:
    """Answers of the objects whose requests are all answered, in input order."""
    while waiting and (everything or waiting[0].answered):
        yield waiting.popleft().answer(options)


def _answer_alone(handler: Handler, request: _Request) -> None:
    try:
        prediction = handler.predict(request.data, request.context)
    except Exception as exc:  # noqa: BLE001
        request.error = failure_of(request.item, "predict", exc)
        return
    _encode(handler, request, prediction)


def _answer_batch(handler: Handler, batch: list[_Request]) -> None:
    """One predict_fn call for the stacked requests; when it fails, each request alone."""
    if not batch:
        return
    try:
        stacked = batch[0].data if len(batch) == 1 else np.concatenate([r.data for r in batch])
        prediction = handler.predict(stacked, batch_context([r.context for r in batch], handler.model))
    except Exception as exc:  # noqa: BLE001 - isolate the request that breaks the batch
        if len(batch) == 1:
            batch[0].error = failure_of(batch[0].item, "predict", exc)
            return
        log.warning("batch prediction failed (%s); predicting its %d requests one by one", exc, len(batch))
        for request in batch:
            _answer_batch(handler, [request])
        return
    start = 0
    for request in batch:
        count = len(request.data)
        try:
            rows = split_prediction(prediction, start, start + count, len(stacked), handler.per_row)
        except RowSplitError as exc:
            request.error = failure_of(request.item, "predict", exc)
        else:
            _encode(handler, request, rows)
        start += count


def _encode(handler: Handler, request: _Request, prediction) -> None:
    try:
        request.response = handler.encode(prediction, request.context)
    except Exception as exc:  # noqa: BLE001
        request.error = failure_of(request.item, "encode", exc)
