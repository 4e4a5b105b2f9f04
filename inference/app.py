"""The SageMaker hosting contract as an ASGI app (Starlette): GET /ping, POST /invocations,
GET /execution-parameters.

/ping answers 503 while the model loads (in the background, so the port is open at once) and 200
once it is ready. POST /invocations is a plain ASGI endpoint (invocations.py): a request's mistakes
are answered 4xx with a JSON body naming the problem (415 content type, 413 payload, 406 Accept,
400 input); only the server's own faults are 5xx. Each request's context (context.py) carries its X-Amzn-SageMaker-Custom-Attributes to the handler;
custom attributes the handler sets go back as that response header. Predictions run on model
threads (model_threads.py): a prediction past the timeout is answered 504 and does not hold up
the requests after it; a model whose calls hang makes /ping answer 503.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from typing import Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import page
from .batching import MicroBatcher
from .invocations import Invocations
from .overrides import load_handler
from .serving_state import ServingState
from .settings import ServeSettings, settings_from_environment

log = logging.getLogger("convlab.serve")


class ServingApp(Starlette):
    """Starlette for every route but POST /invocations, which goes straight to its endpoint
    (invocations.py), past Starlette's middleware and routing."""

    invocations: Invocations

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/invocations":
            await self.invocations(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def json_response(document: dict, status: int, headers: dict | None = None) -> Response:
    return Response(json.dumps(document), status_code=status, media_type="application/json", headers=headers)


async def ping(request: Request) -> Response:
    """200 once the model is ready; 503 while it loads, and while it is wedged (model_threads.py),
    so that SageMaker stops routing requests to it."""
    state: ServingState = request.app.state.serving
    if state.ready:
        batcher, wedged = state.batcher, state.threads.wedged
        document = {"status": "wedged" if wedged else "ready", "model": getattr(state.model, "info", {}),
                    "batched_model_calls": batcher.calls, "batched_images": batcher.images,
                    "abandoned_model_calls": state.threads.abandoned}
        if wedged:
            document["reason"] = wedged
        return json_response(document, 503 if wedged else 200)
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
              load_in_background: bool = True) -> ServingApp:
    """The app for one worker. The user's code/inference.py is imported here, so an import error
    stops the server before it listens. The model loads in the background (/ping answers 503 until
    it is ready), or, with load_in_background=False, before the worker accepts connections: worker
    processes sharing one socket do that, so no request reaches a worker still loading."""
    handler = load_handler(settings.model_dir)
    state = ServingState(settings, handler, on_fatal or _exit_worker)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        state.batcher = MicroBatcher(state.predict_batch, state.threads, settings.max_batch,
                                     settings.batch_wait_ms / 1000, settings.timeout, handler.per_row_outputs)
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

    endpoint = Invocations(state)
    app = ServingApp(routes=[Route("/ping", ping, methods=["GET"]),
                             Route("/invocations", endpoint, methods=["POST"]),  # 405 for other methods
                             Route("/execution-parameters", execution_parameters, methods=["GET"]),
                             *page.routes()],  # the try-it page: GET /, POST /explain (inference/page.py)
                     exception_handlers={HTTPException: http_error}, lifespan=lifespan)
    app.invocations = endpoint
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
