"""The SageMaker inference handler: model_fn, input_fn, predict_fn, output_fn.

Imported as `inference.handler` from the installed package, or copied into model.tar.gz as
`code/inference.py` with its modules beside it in `code/convlab_inference/` (see code_bundle.py).
input_handler/output_handler make the same archive work in AWS's TensorFlow Serving container.

Content types in: image/png, image/jpeg, application/x-image, application/json,
application/jsonlines, application/x-npy, text/csv. Accept: application/json (default),
application/jsonlines (one line per input record), application/x-npy, text/csv.

The preprocessing and classes belong to the model model_fn returns. input_fn has no model
argument in the toolkit contract: it finds the model in the request context (an optional `context`
argument, or the context of the handler call running); without one, it uses the preprocessing of
the models loaded in this process when they all agree (and refuses to guess when they differ),
else the model_dir's metadata.
Custom attributes (X-Amzn-SageMaker-Custom-Attributes, `key=value` pairs): `trace_id=<value>` is
answered back in the response header; `photo_mapping=off` turns the model's photo mapping off
(inference/photo.py; `on` is the default); `scale=0..1` or `scale=0..255` says how array pixels are
scaled (default: detected). JSON answers say what the decoding did as "input" ({"photo_mapping":
"<steps>" | "unchanged" | "off" | "none", "scaling": "0..255" | "0..1"}); the answer's custom
attributes say the same (`photo_mapping=...,scaling=...`) whenever a photo was mapped, the mapping was
turned off or the pixels were 0..1. Other attributes are ignored.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

if __package__:
    from . import backends, decoders, encoders
    from .context import current, parse_custom_attributes
    from .errors import BadInput, InferenceError, ModelLoadError
else:  # code/inference.py in a model archive: the modules ship as code/convlab_inference/
    _CODE_DIR = os.path.dirname(os.path.abspath(__file__))
    if _CODE_DIR not in sys.path:
        sys.path.append(_CODE_DIR)  # last: never shadow an installed package
    from convlab_inference import backends, decoders, encoders
    from convlab_inference.context import current, parse_custom_attributes
    from convlab_inference.errors import BadInput, InferenceError, ModelLoadError

# Marks this module as convlab's handler, wherever it was copied.
CONVLAB_HANDLER = True
MODEL_DIR_ENV = "CONVLAB_MODEL_DIR"

ECHOED_ATTRIBUTES = ("trace_id",)  # custom attributes answered back as they came
MAPPING_SWITCH = {"on": True, "off": False}
SCALING_ATTRIBUTES = ("0..255", "0..1")
QUIET_MAPPING = ("unchanged", "none")  # with raw pixels, answered in JSON only: the header stays as it was

# For input_fn calls that come without a model in their context (scripts calling input_fn
# directly, the TensorFlow Serving container's handlers): model_dir -> preprocessing of the models
# model_fn loaded, and model_dir -> (classes, preprocessing) read from disk.
_loaded: dict = {}
_metadata_by_dir: dict = {}


def default_model_dir() -> Path:
    """$CONVLAB_MODEL_DIR, else the archive root when this file is <root>/code/inference.py, else
    <$CONVLAB_OPT_ML or /opt/ml>/model."""
    if os.environ.get(MODEL_DIR_ENV):
        return Path(os.environ[MODEL_DIR_ENV])
    here = Path(__file__).resolve().parent
    if here.name == "code" and (here.parent / "config.json").is_file():
        return here.parent
    return Path(os.environ.get("CONVLAB_OPT_ML", "/opt/ml")) / "model"


def _directory_metadata():
    model_dir = default_model_dir().resolve()
    if model_dir not in _metadata_by_dir:
        classes, preprocessing = backends.read_model_metadata(model_dir)
        _metadata_by_dir[model_dir] = (tuple(classes), preprocessing)
    return _metadata_by_dir[model_dir]


def _context(context):
    return context if context is not None else current()


def _preprocessing(context):
    model = getattr(_context(context), "model", None)
    preprocessing = getattr(model, "preprocessing", None)
    if preprocessing is not None:
        return preprocessing
    return _process_metadata()[1]


def _process_metadata():
    """(classes, preprocessing) of the models loaded in this process, when they all agree; else
    those of the default model_dir."""
    loaded = set(_loaded.values())
    if len(loaded) > 1:
        shapes = ", ".join(f"{path}: {list(prep.shape)} {len(classes)} classes"
                           for path, (classes, prep) in _loaded.items())
        raise RuntimeError(f"a handler function was called without a context while different models are "
                           f"loaded ({shapes}); pass context=RequestContext(model=...)")
    return loaded.pop() if loaded else _directory_metadata()


def model_fn(model_dir):
    """Load a model_dir: ONNX Runtime on model.onnx when possible, else the SavedModel signature.
    $CONVLAB_BACKEND (auto | onnx | savedmodel) forces one. The model keeps its own classes and
    preprocessing."""
    model = backends.load_model(model_dir)
    _loaded[str(Path(model_dir).resolve())] = (tuple(model.classes), model.preprocessing)
    return model


def input_fn(body, content_type, context=None):
    """Request body -> float32 [N, H, W, C], converted and scaled as the model was trained."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    elif isinstance(body, (bytearray, memoryview)):
        body = bytes(body)
    context = _context(context)
    preprocessing = _request_preprocessing(_preprocessing(context), getattr(context, "custom_attributes", None))
    batch, record_sizes = decoders.decode_records(body, content_type, preprocessing)
    if context is not None:
        context.record_sizes = record_sizes
        context.input_report = preprocessing.report.summary()
    return batch


def _request_preprocessing(preprocessing, custom_attributes):
    """The model's preprocessing with the request's photo_mapping and scale custom attributes."""
    attributes = parse_custom_attributes(custom_attributes)
    mapping = attributes.get("photo_mapping", "on").lower()
    if mapping not in MAPPING_SWITCH:
        raise BadInput(f"custom attribute photo_mapping={attributes['photo_mapping']!r}; expected on or off")
    scaling = attributes.get("scale")
    if scaling is not None and scaling not in SCALING_ATTRIBUTES:
        raise BadInput(f"custom attribute scale={scaling!r}; expected 0..255 (raw pixels) or 0..1")
    return preprocessing.for_request(MAPPING_SWITCH[mapping], scaling)


def predict_fn(data, model):
    """A batch in, {"probabilities": [N, classes], "classes": [...]} out."""
    probabilities = model.predict(data)
    classes = getattr(model, "classes", None) or list(_process_metadata()[0])
    return {"probabilities": probabilities, "classes": classes}


# Each output row depends on its input row only: the server may batch requests together, and
# splits the answer's per-row outputs among them (the class names go to every request).
predict_fn.row_wise = True
predict_fn.per_row_outputs = ("probabilities",)


def output_fn(prediction, accept, context=None):
    """(body bytes, content type) for the Accept header; UnsupportedAccept (406) otherwise."""
    context = _context(context)
    report = getattr(context, "input_report", None)
    if context is not None:
        attributes = parse_custom_attributes(getattr(context, "custom_attributes", None))
        echoed = [f"{key}={attributes[key]}" for key in ECHOED_ATTRIBUTES if key in attributes]
        if report and (report["photo_mapping"] not in QUIET_MAPPING or report["scaling"] != SCALING_ATTRIBUTES[0]):
            echoed += [f"{key}={value}" for key, value in report.items()]
        if echoed and hasattr(context, "response_custom_attributes"):
            context.response_custom_attributes = ",".join(echoed)
    return encoders.encode(prediction, accept, getattr(context, "record_sizes", None), report)


# AWS's TensorFlow Serving container: input_handler(data, context) gets the request stream and a
# Context namedtuple (request_content_type, accept_header, rest_uri, ...) and returns the body the
# container POSTs to TF Serving's REST predict; output_handler gets the requests.Response and returns
# (body, content type). The request uses the row format for serving_default ({"instances": [...]}),
# so TF Serving answers {"predictions": [one probability row per image]}.

def input_handler(data, context):
    encoders.choose_accept(getattr(context, "accept_header", None))
    body = data.read() if hasattr(data, "read") else data
    batch = input_fn(body, getattr(context, "request_content_type", None))
    return json.dumps({"signature_name": "serving_default", "instances": batch.tolist()})


def _tfs_probabilities(document: dict):
    """The probability rows of a TF Serving answer in the row ("predictions") or columnar
    ("outputs") format, with the `probabilities` output picked out where outputs are named."""
    probabilities = document.get("predictions", document.get("outputs"))
    if isinstance(probabilities, dict):
        probabilities = probabilities.get("probabilities", next(iter(probabilities.values()), None))
    elif probabilities and isinstance(probabilities[0], dict):
        probabilities = [row.get("probabilities", next(iter(row.values()), None)) for row in probabilities]
    return probabilities


def output_handler(response, context):
    content = response.content
    if response.status_code != 200:
        text = content.decode("utf-8", "replace") if isinstance(content, bytes) else str(content)
        raise ValueError(f"TensorFlow Serving answered {response.status_code}: {text}")
    document = json.loads(content)
    probabilities = _tfs_probabilities(document) if isinstance(document, dict) else None
    if probabilities is None:
        keys = sorted(document) if isinstance(document, dict) else type(document).__name__
        raise ValueError(f"TensorFlow Serving answer has no predictions or outputs: {keys}")
    prediction = {"probabilities": probabilities, "classes": list(_process_metadata()[0])}
    return output_fn(prediction, getattr(context, "accept_header", None))


__all__ = ["model_fn", "input_fn", "predict_fn", "output_fn", "input_handler", "output_handler",
           "InferenceError", "BadInput", "ModelLoadError", "default_model_dir"]
