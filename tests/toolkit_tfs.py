"""AWS's TensorFlow Serving container, its Python half, for tests: the Context it hands to
input_handler/output_handler, the handler chain it runs, and TF Serving's REST predict API
answered by the SavedModel over HTTP on 127.0.0.1.

The container is not on PyPI (aws/sagemaker-tensorflow-serving-container), so its shapes are
copied from its source:
- docker/build_artifacts/sagemaker/tfs_utils.py: `Context = namedtuple("Context", "model_name,
  model_version, method, rest_uri, grpc_port, channel, custom_attributes, request_content_type,
  accept_header, content_length")`, built by parse_request() with Content-Type and Accept defaulting
  to application/json, rest_uri `http://localhost:{port}/v1/models/{name}:predict`, data = req.stream.
- docker/build_artifacts/sagemaker/python_service.py, _make_handler(): `processed_input =
  input_handler(data, context); response = requests.post(context.rest_uri, data=processed_input);
  return output_handler(response, context)`; any exception becomes a 500 with {"error": str(e)}.
"""
from __future__ import annotations

import io
import json
import threading
from collections import namedtuple
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

Context = namedtuple(
    "Context",
    "model_name, model_version, method, rest_uri, grpc_port, channel, "
    "custom_attributes, request_content_type, accept_header, content_length",
)


def make_context(rest_uri: str, content_type: str | None, accept: str | None, length: int) -> Context:
    """tfs_utils.parse_request() for a request without custom attributes."""
    return Context(None, None, None, rest_uri, 9000, None, None,
                   content_type or "application/json", accept or "application/json", length)


def run_handlers(module, body: bytes, context: Context):
    """python_service._make_handler's chain: (body, content type) or the exception it would turn into 500."""
    import requests

    processed_input = module.input_handler(io.BytesIO(body), context)
    response = requests.post(context.rest_uri, data=processed_input, timeout=60)
    return module.output_handler(response, context)


def predict_rest(signature, document: dict) -> tuple[int, dict]:
    """TF Serving's REST predict for a one-input signature: row format ("instances" ->
    "predictions") or columnar ("inputs" -> "outputs"); a bad request is 400 {"error": ...}."""
    import tensorflow as tf

    if document.get("signature_name", "serving_default") != "serving_default":
        return 404, {"error": f"Serving signature name: \"{document['signature_name']}\" not found"}
    (input_name, spec), = signature.structured_input_signature[1].items()
    rows = "instances" in document
    value = document["instances"] if rows else document.get("inputs")
    if isinstance(value, dict):
        value = value.get(input_name)
    try:
        array = np.asarray(value, dtype=spec.dtype.as_numpy_dtype)
    except (ValueError, TypeError) as exc:
        return 400, {"error": str(exc).splitlines()[0]}
    if not spec.shape.is_compatible_with(array.shape):  # TF Serving checks the shape before running
        return 400, {"error": f"input {input_name}: shape {list(array.shape)} does not match "
                              f"the signature's {spec.shape.as_list()}"}
    tensor = tf.constant(array)
    outputs = {name: out.numpy().tolist() for name, out in signature(**{input_name: tensor}).items()}
    single = next(iter(outputs.values())) if len(outputs) == 1 else None
    if rows:
        count = len(next(iter(outputs.values())))
        predictions = single if single is not None else [
            {name: out[i] for name, out in outputs.items()} for i in range(count)]
        return 200, {"predictions": predictions}
    return 200, {"outputs": single if single is not None else outputs}


class TFServingStandIn:
    """POST /v1/models/<name>:predict answered by a SavedModel's serving_default; keeps each body."""

    def __init__(self, saved_model_dir: str, model_name: str = "model"):
        import tensorflow as tf

        self.signature = tf.saved_model.load(saved_model_dir).signatures["serving_default"]
        self.model_name = model_name
        self.received: list[dict] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != f"/v1/models/{stand_in.model_name}:predict":
                    status, answer = 404, {"error": f"no such path {self.path}"}
                else:
                    try:
                        document = json.loads(body)
                    except ValueError as exc:
                        status, answer = 400, {"error": f"JSON Parse error: {exc}"}
                    else:
                        stand_in.received.append(document)
                        status, answer = predict_rest(stand_in.signature, document)
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def rest_uri(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/v1/models/{self.model_name}:predict"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
