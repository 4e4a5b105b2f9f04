"""What answers a batch transform's requests: the served handler in this process, or a running
model server over HTTP (`convlab serve`, a container), driven as SageMaker drives one.

In process, the handler is loaded exactly as the server loads it (inference.overrides: the
archive's code/inference.py overrides any of the four functions), so each response is the body the
served archive would answer.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from deploy.errors import TransformError
from inference.local import request

log = logging.getLogger(__name__)


class RequestFailed(Exception):
    """One request was not answered 200; `stage` says where, `status` is the HTTP status."""

    def __init__(self, stage: str, message: str, status: int | None = None):
        super().__init__(message)
        self.stage = stage
        self.status = status


class Handler:
    """The server's handler (model_fn, input_fn, predict_fn, output_fn, user overrides included)
    around a loaded model."""

    def __init__(self, model_dir, accept: str = "application/json") -> None:
        try:
            from inference.backends import read_model_metadata
            from inference.errors import ModelLoadError
            from inference.overrides import UserModuleError, load_handler
        except ImportError as exc:
            raise TransformError(f"local transform needs the inference package: {exc}") from exc
        self.accept = accept
        self.model_dir = str(model_dir)
        try:
            read_model_metadata(model_dir)  # a folder that is not a model_dir fails here, in one line
            self.functions = load_handler(model_dir)
            self.model = self.functions.model_fn(str(model_dir))
        except ModelLoadError as exc:
            raise TransformError(f"{model_dir}: not a model_dir (expected labels.json, config.json and model.onnx "
                                 f"or 1/saved_model.pb, see docs/model_dir.md): {exc}") from None
        except UserModuleError as exc:
            raise TransformError(str(exc)) from None
        self.row_wise = self.functions.row_wise
        self.per_row = self.functions.per_row_outputs
        self.shape = getattr(getattr(self.model, "preprocessing", None), "shape", None)

    def context(self, content_type: str | None, accept: str | None = None):
        from inference.context import RequestContext

        return RequestContext(content_type, accept or self.accept, model=self.model)

    def batchable(self, data) -> bool:
        return (self.row_wise and isinstance(data, np.ndarray) and data.ndim == 4
                and self.shape is not None and data.shape[1:] == self.shape)

    def decode(self, body: bytes, content_type: str, context=None) -> Any:
        context = context or self.context(content_type)
        data = self.functions.run_input(body, content_type, context)
        return np.asarray(data) if isinstance(data, np.ndarray) else data

    def predict(self, batch: Any, context=None) -> Any:
        return self.functions.run_predict(batch, self.model, context)

    def encode(self, prediction: Any, context=None) -> tuple[bytes, str]:
        """output_fn's body and content type, by the server's rule (inference/responses.py)."""
        context = context or self.context(None)
        return self.functions.respond(prediction, context.accept_header, context)


class Endpoint:
    """A running model server at `url` (http://host:port), reached over HTTP."""

    def __init__(self, url: str, timeout: float = 600.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise TransformError(f"--endpoint-url {url!r}: expected http://HOST:PORT of a model server")
        self.url = url
        self.host, self.port = parts.hostname, parts.port or 80
        self.timeout = timeout

    def _request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                 timeout: float | None = None) -> tuple[int, dict, bytes]:
        return request(self.port, method, path, body, headers, host=self.host, timeout=timeout or self.timeout)

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Poll GET /ping until it answers 200, as SageMaker does before sending requests."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                status = self._request("GET", "/ping", timeout=5)[0]
                if status == 200:
                    return
                last = f"/ping answered {status}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.2)
        raise TransformError(f"--endpoint-url {self.url}: not ready within {timeout:g} s ({last})")

    def execution_parameters(self) -> dict | None:
        """GET /execution-parameters, or None when the server does not offer it."""
        status, _, body = self._request("GET", "/execution-parameters", timeout=30)
        if status != 200:
            log.info("%s/execution-parameters answered %d: using SageMaker's defaults", self.url, status)
            return None
        try:
            parameters = json.loads(body)
        except ValueError:
            raise TransformError(f"{self.url}/execution-parameters: not JSON") from None
        log.info("%s/execution-parameters: %s", self.url, parameters)
        return parameters

    def invoke(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        try:
            status, headers, payload = self._request(
                "POST", "/invocations", body, {"Content-Type": content_type, "Accept": accept})
        except OSError as exc:
            raise RequestFailed("invoke", f"POST {self.url}/invocations: {exc}") from None
        if status != 200:
            text = payload[:500].decode("utf-8", "replace")
            try:
                text = json.loads(payload).get("message", text)
            except (ValueError, AttributeError):
                pass
            raise RequestFailed("invoke", f"the server answered {status}: {text}", status)
        return payload, headers.get("content-type", "")
