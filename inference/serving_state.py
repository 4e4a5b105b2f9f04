"""What the running server holds: the handler, the model once loaded (in the background, with one
warm-up prediction), the model threads and the micro-batcher."""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

import numpy as np

from .batching import MicroBatcher
from .context import RequestContext
from .errors import ModelLoadError
from .model_threads import ModelThreads
from .overrides import Handler
from .settings import ServeSettings

log = logging.getLogger("convlab.serve")

# Model calls expected to take at most this long run on the event loop when nothing else runs
# (MicroBatcher.inline_images); slower ones always go to a model thread.
INLINE_BUDGET = 0.001
INLINE_SIZES = (1, 2, 4, 8, 16)


class ServingState:
    def __init__(self, settings: ServeSettings, handler: Handler, on_fatal: Callable[[], None]):
        self.settings = settings
        self.handler = handler
        self.on_fatal = on_fatal
        self.model = None
        self.ready = False
        self.failure: str | None = None  # why the model could not load, once it could not
        self.started = time.perf_counter()
        self.threads = ModelThreads(settings.model_threads, settings.stall_ms / 1000)
        self.batcher: MicroBatcher | None = None

    def expected_shape(self):
        prep = getattr(self.model, "preprocessing", None)
        return getattr(prep, "shape", None)

    async def load(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self.model = await loop.run_in_executor(None, self.handler.model_fn, self.settings.model_dir)
        except ModelLoadError as exc:  # a model_dir problem, named in the message: no traceback
            self.failure = f"cannot serve {self.settings.model_dir}: {exc}"
            log.error("%s; the server stops", self.failure)
            self.on_fatal()
            return
        except Exception:
            self.failure = f"model_fn failed to load {self.settings.model_dir} (traceback above)"
            log.exception("model_fn failed to load %s; the server stops", self.settings.model_dir)
            self.on_fatal()
            return
        if self.handler.all_convlab:
            await loop.run_in_executor(None, self._warm_up)
            self.batcher.inline_images = await loop.run_in_executor(None, self._inline_images)
        self.ready = True
        log.info("model ready after %.2f s (%s)", time.perf_counter() - self.started,
                 getattr(self.model, "info", {}).get("backend", "user model_fn"))

    def _warm_up(self) -> None:
        """Decode, predict and encode one image so the first client does not pay for lazy imports."""
        import io

        from PIL import Image

        buffer = io.BytesIO()
        Image.new("L", (2, 2)).save(buffer, "PNG")
        context = RequestContext("image/png", "application/json", model=self.model)
        data = self.handler.run_input(buffer.getvalue(), "image/png", context)
        self.handler.respond(self.handler.run_predict(data, self.model), "application/json", context)

    def _inline_images(self) -> int:
        """The most images (of INLINE_SIZES) convlab's predict_fn takes on this model within
        INLINE_BUDGET, best of 3 calls; 0 when one image takes longer."""
        shape = self.expected_shape()
        if shape is None:
            return 0
        fitting = 0
        for size in INLINE_SIZES:
            batch = np.zeros((size, *shape), np.float32)
            best = float("inf")
            for _ in range(3):
                started = time.perf_counter()
                self.predict_batch(batch)
                best = min(best, time.perf_counter() - started)
            if best > INLINE_BUDGET:
                break
            fitting = size
        log.info("model calls of up to %d image(s) run on the event loop when no other call runs", fitting)
        return fitting

    def predict_batch(self, batch: np.ndarray, context: RequestContext | None = None):
        """predict_fn on stacked requests, with their batch_context (current() while it runs)."""
        if context is None:
            return self.handler.predict_fn(batch, self.model)
        return self.handler.run_predict(batch, self.model, context)
