"""Model backends behind one small interface: `predict(float32 [N, H, W, C]) -> [N, classes]`.

ONNX Runtime on model.onnx when the file exists and onnxruntime imports, otherwise the SavedModel's
serving_default signature. Keras `model.predict` is never used per request (its per-call overhead
dwarfs a small model). TensorFlow is imported only by the SavedModel backend: ONNX Runtime and
TensorFlow in one process slow each other down.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import BadInput, ModelLoadError
from .photo import InputDescription
from .preprocessing import Preprocessing

log = logging.getLogger("convlab.serve")

BACKEND_ENV = "CONVLAB_BACKEND"  # auto | onnx | savedmodel
DIGEST_METADATA = "convlab_weights_sha256"  # model.onnx metadata: the weights it was exported from
THREADS_ENV = "CONVLAB_ONNX_THREADS"
BACKENDS = ("auto", "onnx", "savedmodel")
# A larger batch goes to the backend in slices of this many images, so the activations of one
# call stay small whatever the request holds.
PREDICT_CHUNK = 512
SMALL_SESSION_BYTES = 64 * 1024 * 1024  # larger models get no second (one-thread) session
CALIBRATE_LIMIT = 0.002  # seconds: the longest call calibrate() times


class OnnxBackend:
    """model.onnx in ONNX Runtime. On a CPU with several threads a second, one-thread session of the
    same model takes the small calls: waking a second thread costs more than it saves on one image
    (0.11 vs 0.18 ms a call for the lab's CNN on two cores, the other core busy). The sizes it takes
    are measured at load (one_thread_images)."""

    name = "onnx"

    def __init__(self, path: Path, threads: int = 0):
        import onnxruntime as ort

        available = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        self._session = _session(ort, path, threads, providers)
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name
        self.weights_digest = self._session.get_modelmeta().custom_metadata_map.get(DIGEST_METADATA)
        self._small = None
        self.one_thread_images = 0  # calls of up to this many images use the one-thread session
        if threads != 1 and providers == ["CPUExecutionProvider"] and path.stat().st_size <= SMALL_SESSION_BYTES:
            self._small = _session(ort, path, 1, providers)

    def predict(self, images: np.ndarray) -> np.ndarray:
        session = self._small if len(images) <= self.one_thread_images else self._session
        return session.run([self._output], {self._input: images})[0]

    def calibrate(self, shape: tuple) -> None:
        """Give the one-thread session the call sizes (1, 2, 4, ...) it runs at least as fast as
        the full session (best of 5 each). Sizes whose call takes over CALIBRATE_LIMIT are not
        tried: there a thread's wake-up is lost in the call, and start-up stays short."""
        if self._small is None:
            return
        for size in (1, 2, 4, 8, 16, 32):
            batch = {self._input: np.zeros((size, *shape), np.float32)}
            one, full = _best_time(self._small, self._output, batch), _best_time(self._session, self._output, batch)
            if one > full or full > CALIBRATE_LIMIT:
                break
            self.one_thread_images = size
        log.info("ONNX Runtime: calls of up to %d image(s) run on one thread", self.one_thread_images)


def _session(ort, path: Path, threads: int, providers: list[str]):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Idle ORT threads sleep instead of spinning and leave the cores to the event loop. Served
    # throughput measured the same either way on 2 cores; only back-to-back batch calls gain
    # from spinning.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # ONNX Runtime raises its own types for a damaged or foreign file
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelLoadError(f"{path}: not a model ONNX Runtime can load ({reason}); export it again from the "
                             "SavedModel (python -m tf2onnx.convert --saved-model <model_dir>/1 --output "
                             f"{path}), or train again with export_onnx=true") from None


def _best_time(session, output: str, feed: dict, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        session.run([output], feed)
        best = min(best, time.perf_counter() - started)
    return best


class SavedModelBackend:
    name = "savedmodel"

    def __init__(self, path: Path):
        import tensorflow as tf

        self._tf = tf
        self._loaded = tf.saved_model.load(str(path))
        if "serving_default" not in self._loaded.signatures:
            raise ModelLoadError(f"{path}: the SavedModel has no serving_default signature "
                                 f"(found {sorted(self._loaded.signatures)})")
        self._function = self._loaded.signatures["serving_default"]
        inputs = self._function.structured_input_signature[1]
        if len(inputs) != 1:
            raise ModelLoadError(f"{path}: serving_default takes {sorted(inputs)}; expected one input `images`")
        self._input = next(iter(inputs))
        outputs = self._function.structured_outputs
        self._output = "probabilities" if "probabilities" in outputs else next(iter(outputs))

    def predict(self, images: np.ndarray) -> np.ndarray:
        result = self._function(**{self._input: self._tf.constant(images)})
        return result[self._output].numpy()


@dataclass
class LoadedModel:
    """What model_fn returns: a backend plus the model_dir's classes and preprocessing."""

    backend: object
    classes: list[str]
    preprocessing: Preprocessing
    model_dir: Path
    info: dict = field(default_factory=dict)

    def predict(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[1:] != self.preprocessing.shape:
            raise BadInput(f"model input: batch of shape {list(images.shape)}; expected "
                           f"[N, {', '.join(map(str, self.preprocessing.shape))}]")
        images = np.ascontiguousarray(images, dtype=np.float32)
        if len(images) <= PREDICT_CHUNK:
            return self.backend.predict(images)
        return np.concatenate([self.backend.predict(images[start:start + PREDICT_CHUNK])
                               for start in range(0, len(images), PREDICT_CHUNK)])


def read_json(path: Path) -> object:
    if not path.is_file():
        raise ModelLoadError(f"{path}: not found; a model_dir holds labels.json and config.json "
                             "(see docs/model_dir.md)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path}: not valid JSON ({exc})") from None


def read_model_metadata(model_dir: Path) -> tuple[list[str], Preprocessing]:
    """labels.json, and the preprocessing from config.json with input.json's description (when the
    model_dir has one: models trained before it existed get the plain conversion and resize)."""
    model_dir = Path(model_dir)
    classes = read_json(model_dir / "labels.json")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise ModelLoadError(f"{model_dir / 'labels.json'}: expected a non-empty list of class names")
    preprocessing = Preprocessing.from_config(read_json(model_dir / "config.json"), str(model_dir / "config.json"))
    if (model_dir / "input.json").is_file():
        description = InputDescription.from_document(read_json(model_dir / "input.json"), str(model_dir / "input.json"))
        preprocessing = dataclasses.replace(preprocessing, description=description)
    return classes, preprocessing


def check_onnx_weights(model_dir: Path, onnx_path: Path, found: str | None) -> None:
    """ModelLoadError when model.onnx was not exported from the weights config.json records (the
    SavedModel's): a file an earlier training run left beside a newer model."""
    expected = read_json(model_dir / "config.json").get("weights_sha256")
    if expected is None or found == expected:  # a model_dir from before training recorded digests
        return
    what = f"weights with sha256 {found}" if found else "weights it records no digest of"
    raise ModelLoadError(f"{onnx_path} was exported from other weights ({what}) than the SavedModel in 1/ "
                         f"and config.json beside it (weights_sha256 {expected}): it is left from another "
                         f"training run. Delete it to serve the SavedModel ({BACKEND_ENV}=savedmodel does "
                         "too), or train again to export a matching model.onnx")


def onnxruntime_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def tensorflow_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorflow") is not None


def load_model(model_dir, backend: str | None = None) -> LoadedModel:
    """Load a model_dir (docs/model_dir.md) with the chosen backend (`auto` prefers ONNX Runtime)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelLoadError(f"{model_dir}: model_dir not found")
    backend = (backend or os.environ.get(BACKEND_ENV) or "auto").lower()
    if backend not in BACKENDS:
        raise ModelLoadError(f"backend {backend!r} ({BACKEND_ENV}); expected one of {', '.join(BACKENDS)}")
    classes, preprocessing = read_model_metadata(model_dir)
    onnx_path, saved_model = model_dir / "model.onnx", model_dir / "1"
    use_onnx = backend == "onnx" or (backend == "auto" and onnx_path.is_file() and onnxruntime_available())
    if use_onnx:
        if not onnx_path.is_file():
            raise ModelLoadError(f"{onnx_path}: not found, and backend 'onnx' was asked for")
        runner = OnnxBackend(onnx_path, int(os.environ.get(THREADS_ENV, "0") or 0))
        check_onnx_weights(model_dir, onnx_path, runner.weights_digest)
    else:
        if not onnx_path.is_file() and not tensorflow_available():
            raise ModelLoadError(f"{model_dir}: no model.onnx, and TensorFlow is not installed to load the "
                                 "SavedModel in 1/ (a serve-only image): train with export_onnx=true (the "
                                 "default) so model.onnx exists, or serve with the full image convlab:latest")
        if not (saved_model / "saved_model.pb").is_file():
            raise ModelLoadError(f"{saved_model}: no saved_model.pb (and no usable model.onnx); expected "
                                 "the SavedModel training exports to <model_dir>/1")
        runner = SavedModelBackend(saved_model)
    model = LoadedModel(runner, classes, preprocessing, model_dir, {"backend": runner.name})
    # One warm-up call: the first run allocates buffers and would otherwise land on a client.
    model.predict(np.zeros((1, *preprocessing.shape), dtype=np.float32))
    if isinstance(runner, OnnxBackend):
        runner.calibrate(tuple(preprocessing.shape))
    log.info("loaded %s with %s: input %s, %d classes", model_dir, runner.name,
             list(preprocessing.shape), len(classes))
    return model
