"""The SageMaker inference handler: model_fn, input_fn, predict_fn, output_fn.

Imported as `inference.handler` from the installed package, or copied into model.tar.gz as
`code/inference.py` with its modules beside it in `code/convlab_inference/` (see code_bundle.py).
input_handler/output_handler make the same archive work in AWS's TensorFlow Serving container.

Content types in: image/png, image/jpeg, application/x-image, application/json, application/x-npy,
text/csv. Accept: application/json (default), application/x-npy, text/csv.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

if __package__:
    from . import backends, decoders, encoders
    from .errors import BadInput, InferenceError, ModelLoadError
else:  # code/inference.py in a model archive: the modules ship as code/convlab_inference/
    _CODE_DIR = os.path.dirname(os.path.abspath(__file__))
    if _CODE_DIR not in sys.path:
        sys.path.append(_CODE_DIR)  # last: never shadow an installed package
    from convlab_inference import backends, decoders, encoders
    from convlab_inference.errors import BadInput, InferenceError, ModelLoadError

# Marks this module as convlab's handler, wherever it was copied.
CONVLAB_HANDLER = True
MODEL_DIR_ENV = "CONVLAB_MODEL_DIR"

# input_fn has no model argument in the toolkit contract, so the preprocessing and classes of the
# model that model_fn loaded last are kept here (one model per serving process).
_metadata: dict = {}


def default_model_dir() -> Path:
    """$CONVLAB_MODEL_DIR, else the archive root when this file is <root>/code/inference.py, else
    <$CONVLAB_OPT_ML or /opt/ml>/model."""
    if os.environ.get(MODEL_DIR_ENV):
        return Path(os.environ[MODEL_DIR_ENV])
    here = Path(__file__).resolve().parent
    if here.name == "code" and (here.parent / "config.json").is_file():
        return here.parent
    return Path(os.environ.get("CONVLAB_OPT_ML", "/opt/ml")) / "model"


def _model_metadata():
    if not _metadata:
        model_dir = default_model_dir()
        classes, preprocessing = backends.read_model_metadata(model_dir)
        _metadata.update(classes=classes, preprocessing=preprocessing, model_dir=model_dir)
    return _metadata


def model_fn(model_dir):
    """Load a model_dir: ONNX Runtime on model.onnx when possible, else the SavedModel signature.
    $CONVLAB_BACKEND (auto | onnx | savedmodel) forces one."""
    model = backends.load_model(model_dir)
    _metadata.update(classes=model.classes, preprocessing=model.preprocessing, model_dir=model.model_dir)
    return model


def input_fn(body, content_type):
    """Request body -> float32 [N, H, W, C], converted and scaled as in training."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    elif isinstance(body, (bytearray, memoryview)):
        body = bytes(body)
    return decoders.decode(body, content_type, _model_metadata()["preprocessing"])


def predict_fn(data, model):
    """A batch in, {"probabilities": [N, classes], "classes": [...]} out."""
    probabilities = model.predict(data)
    classes = getattr(model, "classes", None) or _model_metadata()["classes"]
    return {"probabilities": probabilities, "classes": classes}


# Each output row depends on its input row only: the server may batch requests together.
predict_fn.row_wise = True


def output_fn(prediction, accept):
    """(body bytes, content type) for the Accept header; UnsupportedAccept (406) otherwise."""
    return encoders.encode(prediction, accept)


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
    prediction = {"probabilities": probabilities, "classes": _model_metadata()["classes"]}
    return output_fn(prediction, getattr(context, "accept_header", None))


__all__ = ["model_fn", "input_fn", "predict_fn", "output_fn", "input_handler", "output_handler",
           "InferenceError", "BadInput", "ModelLoadError", "default_model_dir"]
