"""The try-it page of `convlab serve`, beside the SageMaker routes (which it does not change):

    GET  /                  the page (HTML, CSS and JavaScript from inference/static/, nothing external)
    GET  /static/<file>     its files, and a few real Fashion-MNIST test images in static/samples/
    GET  /favicon.ico       the page's icon (static/favicon.svg)
    GET  /about             the model's classes, input, test accuracy (metrics.json) and the payload limit
    GET  /samples           the images the page offers (JSON): the model's own test images saved at
                            training (<model_dir>/samples/, served as /model-samples/<file>), else the
                            bundled Fashion-MNIST ones for a Fashion-MNIST model, else none
    POST /explain           an image in (same content types and 4xx errors as /invocations), out:
                            the model's input, the feature maps after each conv block and the
                            first-layer filters (JSON)

The page predicts through POST /invocations itself. /explain runs in its own single thread, never in
the micro-batcher or the model thread of /invocations. Its feature maps come from the model_dir:
explain.onnx with ONNX Runtime, else model.keras with TensorFlow, else none (the page says why).
"""
from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from . import decoders
from .errors import InferenceError

log = logging.getLogger("convlab.serve.page")

STATIC = Path(__file__).resolve().parent / "static"
MEDIA = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".js": "text/javascript; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml"}
FASHION_MNIST = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"]
MAPS_PER_BLOCK = 8
DECIMALS = 4


def _rounded(array) -> list:
    return np.round(np.asarray(array, dtype=np.float64), DECIMALS).tolist()


def _json(document: dict, status: int = 200) -> Response:
    return Response(json.dumps(document), status_code=status, media_type="application/json")


def _not_found(what: str) -> Response:
    return _json({"error": "not found", "status": 404, "message": f"{what}: no such file of the page"}, 404)


async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", media_type=MEDIA[".html"])


async def static(request: Request) -> Response:
    name = request.path_params["name"]
    path = (STATIC / name).resolve()
    if STATIC not in path.parents or not path.is_file() or path.suffix not in MEDIA:
        return _not_found(f"/static/{name}")
    return FileResponse(path, media_type=MEDIA[path.suffix])


def _document(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _model_dir(request: Request) -> Path:
    return Path(request.app.state.serving.settings.model_dir)


def offered_samples(model_dir: Path) -> dict:
    """{"source": "model" | "bundled" | "none", "samples": [{"url", "label"}], "note"}."""
    listed = _document(model_dir / "samples" / "samples.json")
    entries = listed.get("samples", []) if isinstance(listed, dict) else []
    own = [{"url": f"/model-samples/{e['file']}", "label": str(e.get("label", ""))} for e in entries
           if isinstance(e, dict) and (model_dir / "samples" / str(e.get("file"))).is_file()]
    if own:
        return {"source": "model", "samples": own, "note": "test images of this model, one per class"}
    config = _document(model_dir / "config.json") or {}
    shape = [config.get("preprocessing", {}).get(k) for k in ("height", "width", "channels")]
    if config.get("classes") == FASHION_MNIST and shape == [28, 28, 1]:
        bundled = sorted(p.name for p in (STATIC / "samples").glob("*.png"))
        return {"source": "bundled", "note": "Fashion-MNIST test images",
                "samples": [{"url": f"/static/samples/{n}", "label": n.rsplit("-test", 1)[0]} for n in bundled]}
    return {"source": "none", "samples": [],
            "note": f"{model_dir} holds no samples/ of its own test images: drop an image of one of its classes"}


async def samples(request: Request) -> Response:
    return _json(offered_samples(_model_dir(request)))


async def model_sample(request: Request) -> Response:
    folder = (_model_dir(request) / "samples").resolve()
    name = request.path_params["name"]
    path = (folder / name).resolve()
    if folder not in path.parents or not path.is_file() or path.suffix != ".png":
        return _not_found(f"/model-samples/{name}")
    return FileResponse(path, media_type=MEDIA[".png"])


async def favicon(request: Request) -> Response:
    return FileResponse(STATIC / "favicon.svg", media_type=MEDIA[".svg"])


async def about(request: Request) -> Response:
    """What the page's header says about the model, and the upload limit it checks before sending."""
    model_dir = _model_dir(request)
    metrics, config = _document(model_dir / "metrics.json") or {}, _document(model_dir / "config.json") or {}
    classes = config.get("classes") or metrics.get("classes") or _document(model_dir / "labels.json") or []
    return _json({"classes": classes, "test_accuracy": metrics.get("test_accuracy"),
                  "num_test": metrics.get("num_test"), "model_type": metrics.get("model_type"),
                  "input": config.get("preprocessing"),
                  "max_payload_mb": request.app.state.serving.settings.max_payload_mb})


class Explainer:
    """Feature maps of the conv blocks listed in a model_dir's explain.json."""

    def __init__(self, model_dir: Path):
        self.model_dir = Path(model_dir)
        path = self.model_dir / "explain.json"
        document = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"blocks": []}
        self.blocks = [block["name"] for block in document.get("blocks", [])]
        self.filters = document.get("filters")
        self.source, self.note, self._run = None, "", None
        if not path.is_file():
            self.note = f"{path} not found: this model_dir was written without the page's export"
        elif not self.blocks:
            self.note = "this model has no conv blocks (an MLP): no feature maps or filters to show"
        else:
            self._load()

    def _load(self) -> None:
        import importlib.util

        onnx_path = self.model_dir / "explain.onnx"
        if onnx_path.is_file() and importlib.util.find_spec("onnxruntime"):
            import onnxruntime as ort

            session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
            name = session.get_inputs()[0].name
            self._run = lambda images: dict(zip(self.blocks, session.run(self.blocks, {name: images})))
            self.source = "explain.onnx (ONNX Runtime)"
        elif (self.model_dir / "model.keras").is_file() and importlib.util.find_spec("tensorflow"):
            import keras

            model = keras.saving.load_model(self.model_dir / "model.keras", compile=False)
            probe = keras.Model(model.inputs, [model.get_layer(n).output for n in self.blocks])

            def run(images):
                outputs = probe([images], training=False)
                outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
                return {n: np.asarray(o) for n, o in zip(self.blocks, outputs)}

            self._run = run
            self.source = "model.keras (TensorFlow)"
        else:
            self.note = (f"{self.model_dir}: neither explain.onnx with onnxruntime nor model.keras with "
                         "TensorFlow is available to compute feature maps")

    def explain(self, image: np.ndarray) -> dict:
        """`image` float32 [H, W, C] as the model takes it."""
        shown = image if image.shape[2] == 3 else image.mean(axis=2)  # colour as the model sees it
        document = {"input": _rounded(shown), "blocks": [],
                    "filters": _filters(self.filters), "source": self.source, "note": self.note}
        if self._run is None:
            return document
        outputs = self._run(np.ascontiguousarray(image[None], dtype=np.float32))
        for name in self.blocks:
            maps = np.asarray(outputs[name])[0]
            order = np.argsort(-maps.mean(axis=(0, 1)), kind="stable")[:MAPS_PER_BLOCK]
            document["blocks"].append({
                "name": name, "shape": list(maps.shape),
                "maps": [{"channel": int(c), "values": _rounded(maps[:, :, c])} for c in order]})
        return document


def _filters(filters: dict | None) -> dict | None:
    """First-layer kernels averaged over input channels: one k x k grid per filter."""
    if not filters:
        return None
    kernel = np.asarray(filters["weights"], dtype=np.float64)
    return {"layer": filters["layer"], "shape": filters["shape"],
            "kernels": [_rounded(kernel[:, :, :, f].mean(axis=2)) for f in range(kernel.shape[-1])]}


def _explainer(app) -> tuple[ThreadPoolExecutor, dict]:
    """The page's own thread and its lazily built Explainer, kept on the app."""
    if not hasattr(app.state, "page"):
        app.state.page = {"executor": ThreadPoolExecutor(max_workers=1, thread_name_prefix="page"), "explainer": None}
    return app.state.page["executor"], app.state.page


def _explain(page: dict, model_dir: str, body: bytes, content_type: str | None, preprocessing,
             custom_attributes: str | None = None) -> dict:
    """The Explainer's document for the first image of the body, decoded as /invocations decodes it
    (the photo mapping included); "preprocessing" says what the decoding did."""
    from .handler import _request_preprocessing

    preprocessing = _request_preprocessing(preprocessing, custom_attributes)
    batch = decoders.decode(body, content_type, preprocessing)
    if page["explainer"] is None:
        page["explainer"] = Explainer(Path(model_dir))
    return {**page["explainer"].explain(batch[0]), "preprocessing": preprocessing.report.summary()}


async def explain(request: Request) -> Response:
    from .backends import read_model_metadata
    from .invocations import ClientGone, error_status, read_body

    state = request.app.state.serving
    if not state.ready:
        return _json({"error": "service unavailable", "status": 503,
                      "message": "the model is still loading; retry when GET /ping answers 200"}, 503)
    content_type = request.headers.get("content-type")
    try:
        decoders.check_content_type(content_type)
        body = await read_body(request.receive, request.headers.get("content-length"),
                               state.settings.max_payload_bytes)
        preprocessing = getattr(state.model, "preprocessing", None) or \
            read_model_metadata(Path(state.settings.model_dir))[1]
        executor, page = _explainer(request.app)
        document = await asyncio.get_running_loop().run_in_executor(
            executor, _explain, page, state.settings.model_dir, body, content_type, preprocessing,
            request.headers.get("x-amzn-sagemaker-custom-attributes"))
    except ClientGone:
        return _json({"error": "bad request", "status": 400, "message": "the client disconnected"}, 400)
    except InferenceError as exc:
        if error_status(exc) is None or exc.status >= 500:
            raise
        return _json(exc.to_dict(), exc.status)
    return _json(document)


def routes() -> list[Route]:
    return [Route("/", index, methods=["GET"]), Route("/static/{name:path}", static, methods=["GET"]),
            Route("/favicon.ico", favicon, methods=["GET"]), Route("/about", about, methods=["GET"]),
            Route("/samples", samples, methods=["GET"]),
            Route("/model-samples/{name:path}", model_sample, methods=["GET"]),
            Route("/explain", explain, methods=["POST"])]
