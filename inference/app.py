"""The SageMaker hosting contract as an ASGI app (Starlette): GET /ping, POST /invocations,
GET /execution-parameters.

/ping answers 503 while the model loads (in the background, so the port is open at once) and 200
once it is ready. A request's mistakes are answered 4xx with a JSON body naming the problem
(415 content type, 413 payload, 406 Accept, 400 input); only the server's own faults are 5xx.
Each request's context (context.py) carries its X-Amzn-SageMaker-Custom-Attributes to the handler;
custom attributes the handler sets go back as that response header. Predictions run on model
threads (model_threads.py): a prediction past the timeout is answered 504 and does not hold up
the requests after it.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from typing import Callable

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from . import decoders, encoders, page
from .batching import MicroBatcher
from .context import CUSTOM_ATTRIBUTES, RequestContext
from .errors import BadInput, InferenceError, PayloadTooLarge
from .overrides import Handler, load_handler
from .serving_state import ServingState
from .settings import ServeSettings, settings_from_environment

log = logging.getLogger("convlab.serve")
access_log = logging.getLogger("convlab.serve.access")

THREAD_DECODE_BYTES = 256 * 1024  # larger bodies are decoded off the event loop
DRAIN_FACTOR = 8  # an oversized body is read (and dropped) up to this many limits, then the connection closes


def error_status(exc: BaseException) -> int | None:
    """The HTTP status of a typed request error, including those of a handler copy shipped in
    code/ (its own error classes, same shape)."""
    if isinstance(exc, InferenceError):
        return exc.status
    status = getattr(exc, "status", None)
    if isinstance(status, int) and 400 <= status < 600 and callable(getattr(exc, "to_dict", None)):
        return status
    return None


def json_response(document: dict, status: int, headers: dict | None = None) -> Response:
    return Response(json.dumps(document), status_code=status, media_type="application/json", headers=headers)


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    too_large = PayloadTooLarge(f"the body is larger than the {limit / 1048576:g} MB payload limit "
                                "(MaxPayloadInMB / --max-payload-mb)")
    if declared and declared.isdigit() and int(declared) > limit:
        await _drain(request, limit * DRAIN_FACTOR)
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        elif size > limit * DRAIN_FACTOR:
            break  # past the drain budget: answer now, the connection closes
    if size > limit:
        raise too_large
    return b"".join(chunks)


async def _drain(request: Request, budget: int) -> None:
    """Read and drop the rest of an oversized body so the client can read the 413."""
    async for chunk in request.stream():
        budget -= len(chunk)
        if budget < 0:
            break


async def decode_body(handler: Handler, body: bytes, context: RequestContext):
    """input_fn, off the event loop for large bodies; an untyped failure becomes a 400."""
    try:
        if len(body) > THREAD_DECODE_BYTES:
            return await asyncio.get_running_loop().run_in_executor(
                None, handler.run_input, body, context.request_content_type, context)
        return handler.run_input(body, context.request_content_type, context)
    except Exception as exc:
        if error_status(exc) is not None:
            raise
        raise BadInput(f"input_fn could not decode the {context.request_content_type or 'untyped'} body: "
                       f"{type(exc).__name__}: {exc}") from exc


def predict(state: "ServingState", data, context: RequestContext):
    """An awaitable prediction, asyncio.TimeoutError past the timeout: through the micro-batcher
    when predict_fn is row-wise and the batch has the model's input shape, else one call of its
    own on a model thread."""
    handler = state.handler
    if (handler.row_wise and isinstance(data, np.ndarray) and data.ndim == 4
            and data.shape[1:] == state.expected_shape()):
        return state.batcher.submit(data)
    return asyncio.wait_for(state.threads.run(handler.run_predict, data, state.model, context),
                            state.settings.timeout)


def answer_headers(context: RequestContext) -> dict | None:
    try:
        return context.answer_headers() or None
    except ValueError as exc:
        log.warning("the handler's response custom attributes are dropped: %s", exc)
        return None


async def invocations(request: Request) -> Response:
    state: ServingState = request.app.state.serving
    started = time.perf_counter()
    status, images, size = 500, 0, 0
    headers = request.headers
    context = RequestContext(headers.get("content-type"), headers.get("accept"), headers.get(CUSTOM_ATTRIBUTES),
                             request_headers=headers)
    batcher = state.batcher
    batcher.arriving += 1
    arriving = True
    try:
        if not state.ready:
            status = 503
            return json_response({"error": "service unavailable", "status": 503,
                                  "message": "the model is still loading; retry when GET /ping answers 200"}, 503)
        handler = state.handler
        context.model = state.model
        if handler.builtin_input:
            decoders.check_content_type(context.request_content_type)
        body = await read_body(request, state.settings.max_payload_bytes)
        size = context.content_length = len(body)
        if handler.builtin_output:
            encoders.choose_accept(context.accept_header)
        data = await decode_body(handler, body, context)
        batcher.arriving -= 1
        arriving = False
        images = len(data) if isinstance(data, np.ndarray) and data.ndim else 0
        try:
            prediction = await predict(state, data, context)
        except asyncio.TimeoutError:
            status = 504
            return json_response({"error": "gateway timeout", "status": 504, "message":
                                  f"the prediction took over {state.settings.timeout:g} s "
                                  "(SAGEMAKER_MODEL_SERVER_TIMEOUT)"}, 504)
        payload, media = handler.run_output(prediction, context.accept_header, context)
        status = 200
        return Response(payload, media_type=media, headers=answer_headers(context))
    except ClientDisconnect:
        status = 499  # logged only: nobody is left to answer
        return Response(status_code=400)
    except Exception as exc:
        status = error_status(exc)
        if status is None:
            status = 500
            log.exception("POST /invocations failed")
            return json_response({"error": "internal error", "status": 500,
                                  "message": f"{type(exc).__name__}: {exc}"}, 500)
        return json_response(exc.to_dict(), status)
    finally:
        if arriving:
            batcher.arriving -= 1
        if status >= 400 or state.settings.access_log:
            access_log.info("POST /invocations %d %s images=%d bytes=%d %.2fms", status, context.request_content_type
                            or "-", images, size, (time.perf_counter() - started) * 1000)


async def ping(request: Request) -> Response:
    state: ServingState = request.app.state.serving
    if state.ready:
        batcher = state.batcher
        return json_response({"status": "ready", "model": getattr(state.model, "info", {}),
                              "batched_model_calls": batcher.calls, "batched_images": batcher.images,
                              "abandoned_model_calls": state.threads.abandoned}, 200)
    return json_response({"status": "loading"}, 503)


async def execution_parameters(request: Request) -> Response:
    """What batch transform should send: SAGEMAKER_MAX_CONCURRENT_TRANSFORMS (else the worker count),
    SAGEMAKER_BATCH_STRATEGY (else MULTI_RECORD), and the payload limit in whole MB."""
    settings: ServeSettings = request.app.state.serving.settings
    concurrent = settings.max_concurrent_transforms or max(1, settings.workers)
    return json_response({"MaxConcurrentTransforms": concurrent, "BatchStrategy": settings.batch_strategy,
                          "MaxPayloadInMB": max(1, int(settings.max_payload_mb))}, 200)


async def http_error(request: Request, exc: HTTPException) -> Response:
    return json_response({"error": exc.detail, "status": exc.status_code,
                          "message": f"{request.method} {request.url.path}: {exc.detail}; the server answers "
                                     "GET /ping, POST /invocations, GET /execution-parameters"},
                         exc.status_code, headers=getattr(exc, "headers", None))


def build_app(settings: ServeSettings, on_fatal: Callable[[], None] | None = None,
              load_in_background: bool = True) -> Starlette:
    """The app for one worker. The user's code/inference.py is imported here, so an import error
    stops the server before it listens. The model loads in the background (/ping answers 503 until
    it is ready), or, with load_in_background=False, before the worker accepts connections: worker
    processes sharing one socket do that, so no request reaches a worker still loading."""
    handler = load_handler(settings.model_dir)
    state = ServingState(settings, handler, on_fatal or _exit_worker)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        state.batcher = MicroBatcher(state.predict_batch, state.threads, settings.max_batch,
                                     settings.batch_wait_ms / 1000, settings.timeout)
        state.batcher.start()
        loading = None
        if load_in_background:
            loading = asyncio.get_running_loop().create_task(state.load())
        else:
            await state.load()
        try:
            yield
        finally:
            if loading:
                loading.cancel()
            await state.batcher.stop()
            state.threads.stop()
            log.info("stopped after %d model calls for %d images", state.batcher.calls, state.batcher.images)

    app = Starlette(routes=[Route("/ping", ping, methods=["GET"]),
                            Route("/invocations", invocations, methods=["POST"]),
                            Route("/execution-parameters", execution_parameters, methods=["GET"]),
                            *page.routes()],  # the try-it page: GET /, POST /explain (inference/page.py)
                    exception_handlers={HTTPException: http_error}, lifespan=lifespan)
    app.state.serving = state
    return app


def _exit_worker() -> None:
    """A worker whose model cannot load exits with an error instead of answering 503 forever."""
    logging.shutdown()
    os._exit(1)


def app_from_environment() -> Starlette:
    """Factory for multi-worker servers: each worker process builds its app from the settings the
    main process left in $CONVLAB_SERVE_SETTINGS."""
    configure_logging()  # worker processes are spawned without the parent's logging setup
    return build_app(settings_from_environment(), load_in_background=False)


def configure_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
