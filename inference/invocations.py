"""POST /invocations as a plain ASGI endpoint: the request path every prediction takes.

It reads the ASGI messages itself instead of going through Starlette's Request and Response, and
the app (app.py) hands it POST /invocations before Starlette's routing and middleware: on a small
model those layers cost more than the model call. A request's mistakes are answered 4xx with a
JSON body naming the problem (415 content type, 413 payload, 406 Accept, 400 input); only the
server's own faults are 5xx.
"""
from __future__ import annotations

import asyncio
import binascii
import csv
import json
import logging
import time
import zlib

import numpy as np
from PIL import UnidentifiedImageError

from . import decoders, encoders
from .context import CUSTOM_ATTRIBUTES, RequestContext
from .errors import BadInput, InferenceError, PayloadTooLarge
from .model_threads import Deadline
from .overrides import Handler

log = logging.getLogger("convlab.serve")
access_log = logging.getLogger("convlab.serve.access")

THREAD_DECODE_BYTES = 256 * 1024  # larger bodies are decoded off the event loop
THREAD_ENCODE_VALUES = 1024  # predictions of more values (rows x classes, ~0.7 ms of JSON) are encoded off the loop
# What an untyped input_fn failure must be to count as the client's undecodable body (400); any
# other exception is a fault of the server or its code (500, logged with its traceback).
DECODING_ERRORS = (UnicodeDecodeError, json.JSONDecodeError, binascii.Error, csv.Error, zlib.error, EOFError,
                   UnidentifiedImageError)
DRAIN_FACTOR = 8  # an oversized body is read (and dropped) up to this many limits, then the connection closes


class ClientGone(Exception):
    """The client disconnected before its body was read."""


def error_status(exc: BaseException) -> int | None:
    """The HTTP status of a typed request error, including those of a handler copy shipped in
    code/ (its own error classes, same shape)."""
    if isinstance(exc, InferenceError):
        return exc.status
    status = getattr(exc, "status", None)
    if isinstance(status, int) and 400 <= status < 600 and callable(getattr(exc, "to_dict", None)):
        return status
    return None


def content_type_header(media: str) -> bytes:
    """The Content-Type of an answer: text types say their charset (as Starlette's Response did)."""
    if media.startswith("text/") and "charset=" not in media:
        media += "; charset=utf-8"
    return media.encode("latin-1")


async def respond(send, status: int, body: bytes, media: str | None, headers: dict | None = None) -> None:
    raw = [(b"content-length", str(len(body)).encode())]
    if media:
        raw.append((b"content-type", content_type_header(media)))
    for key, value in (headers or {}).items():
        raw.append((key.lower().encode("latin-1"), str(value).encode("latin-1")))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def respond_json(send, document: dict, status: int) -> None:
    await respond(send, status, json.dumps(document).encode(), "application/json")


async def read_body(receive, declared: str | None, limit: int) -> bytes:
    """The whole body, or PayloadTooLarge past `limit` bytes (declared or read): the rest of an
    oversized body is read and dropped, up to DRAIN_FACTOR limits, so the client can read the 413."""
    keep = not (declared and declared.isdigit() and int(declared) > limit)
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk, more = message.get("body", b""), message.get("more_body", False)
        size += len(chunk)
        if keep and size <= limit:
            chunks.append(chunk)
        elif size > limit * DRAIN_FACTOR:
            break  # past the drain budget: answer now, the connection closes
    if size > limit or not keep:
        exact = bool(declared and declared.isdigit()) or not more  # else the read stopped part way
        whole, at_least = (int(declared) if declared and declared.isdigit() else size), "" if exact else "at least "
        raise PayloadTooLarge(f"the body is too large ({at_least}{whole / 1048576:.1f} MB, limit "
                              f"{limit / 1048576:g} MB): over the {limit / 1048576:g} MB payload limit "
                              "(MaxPayloadInMB / --max-payload-mb)")
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def decode_body(handler: Handler, body: bytes, context: RequestContext):
    """input_fn, off the event loop for large bodies. Typed request errors keep their status and
    decoding errors (DECODING_ERRORS) become a 400; anything else is raised as it is (a 500)."""
    try:
        if len(body) > THREAD_DECODE_BYTES:
            return await asyncio.get_running_loop().run_in_executor(
                None, handler.run_input, body, context.request_content_type, context)
        return handler.run_input(body, context.request_content_type, context)
    except DECODING_ERRORS as exc:
        raise BadInput(f"input_fn could not decode the {context.request_content_type or 'untyped'} body: "
                       f"{type(exc).__name__}: {exc}") from exc


def prediction_size(prediction) -> int:
    """About how many values output_fn has to encode."""
    if isinstance(prediction, np.ndarray):
        return prediction.size
    if isinstance(prediction, dict):
        return sum(prediction_size(value) for value in prediction.values())
    return len(prediction) if isinstance(prediction, (list, tuple)) else 0


async def predict(state, data, context: RequestContext):
    """The prediction by the request's deadline (else PredictionTimeout, a 504). Row-wise predict_fn
    on a batch of the model's input shape: through the micro-batcher (MicroBatcher.predict: small
    calls waited for on the event loop); anything else gets one call of its own on a model thread."""
    handler = state.handler
    deadline = Deadline(asyncio.get_running_loop().time() + state.settings.timeout, state.settings.timeout)
    if (handler.row_wise and isinstance(data, np.ndarray) and data.ndim == 4
            and data.shape[1:] == state.expected_shape()):
        return await state.batcher.predict(data, deadline, context)
    return await state.threads.run(handler.run_predict, data, state.model, context, deadline=deadline)


async def encode_answer(handler: Handler, prediction, context: RequestContext) -> tuple[bytes, str]:
    """output_fn's body and content type; off the event loop for large predictions."""
    if prediction_size(prediction) > THREAD_ENCODE_VALUES:
        return await asyncio.get_running_loop().run_in_executor(
            None, handler.respond, prediction, context.accept_header, context)
    return handler.respond(prediction, context.accept_header, context)


def answer_headers(context: RequestContext) -> dict | None:
    try:
        return context.answer_headers() or None
    except ValueError as exc:
        log.warning("the handler's response custom attributes are dropped: %s", exc)
        return None


def request_context(scope: dict) -> RequestContext:
    headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
    return RequestContext(headers.get("content-type"), headers.get("accept"),
                          headers.get(CUSTOM_ATTRIBUTES.lower()), request_headers=headers)


class Invocations:
    """The ASGI endpoint of POST /invocations for one app's ServingState."""

    def __init__(self, state):
        self.state = state

    async def __call__(self, scope, receive, send) -> None:
        state = self.state
        started = time.perf_counter()
        context = request_context(scope)
        batcher = state.batcher
        batcher.arriving += 1
        status, images, arriving = 500, 0, True
        try:
            if not state.ready:
                status = 503
                await respond_json(send, {"error": "service unavailable", "status": 503, "message":
                                          "the model is still loading; retry when GET /ping answers 200"}, 503)
                return
            handler = state.handler
            context.model = state.model
            if handler.builtin_input:
                decoders.check_content_type(context.request_content_type)
            body = await read_body(receive, context.request_headers.get("content-length"),
                                   state.settings.max_payload_bytes)
            context.content_length = len(body)
            if handler.builtin_output:
                encoders.choose_accept(context.accept_header)
            data = await decode_body(handler, body, context)
            batcher.arriving -= 1
            arriving = False
            images = len(data) if isinstance(data, np.ndarray) and data.ndim else 0
            status = await self._answer(send, data, context)
        except ClientGone:
            status = 499  # logged only: nobody is left to answer
        except asyncio.CancelledError:  # the server is stopping and can wait no longer
            status = await self._stopping(send)
        except Exception as exc:
            status = await self._fail(send, exc)
        finally:
            if arriving:
                batcher.arriving -= 1
            if status >= 400 or state.settings.access_log:
                access_log.info("POST /invocations %d %s images=%d bytes=%d %.2fms", status,
                                context.request_content_type or "-", images, context.content_length,
                                (time.perf_counter() - started) * 1000)

    async def _answer(self, send, data, context: RequestContext) -> int:
        prediction = await predict(self.state, data, context)
        payload, media = await encode_answer(self.state.handler, prediction, context)
        await respond(send, 200, payload, media, answer_headers(context))
        return 200

    @staticmethod
    async def _stopping(send) -> int:
        try:
            await respond_json(send, {"error": "service unavailable", "status": 503, "message":
                                      "the server stopped before the prediction was done; send the request "
                                      "again"}, 503)
        except Exception:  # noqa: BLE001 - the answer had started, or the connection is gone
            log.info("a request cancelled at shutdown could not be answered")
        return 503

    @staticmethod
    async def _fail(send, exc: Exception) -> int:
        status = error_status(exc)
        if status is None:
            log.exception("POST /invocations failed")
            await respond_json(send, {"error": "internal error", "status": 500,
                                      "message": f"{type(exc).__name__}: {exc}"}, 500)
            return 500
        await respond_json(send, exc.to_dict(), status)
        return status
