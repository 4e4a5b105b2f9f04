"""Typed errors a request can cause, each carrying the HTTP status the server answers with.

Where AWS's sagemaker-inference toolkit is installed (its MMS-based serving containers), every
InferenceError is also its BaseInferenceToolkitError, the only exception whose status_code that
toolkit's Transformer answers with (any other becomes 500). Without the toolkit nothing changes.
"""
from __future__ import annotations

from http import HTTPStatus

try:
    from sagemaker_inference.errors import BaseInferenceToolkitError as _ToolkitError
except ImportError:  # convlab's own server and the TF Serving container do not need it
    _ToolkitError = Exception


class InferenceError(_ToolkitError):
    """Base class: a problem with one request, reported to the client as JSON with `status`.

    `status_code`, `message` and `phrase` are the attributes sagemaker-inference reads."""

    status = 500
    reason = "internal error"

    def __init__(self, message: str):
        Exception.__init__(self, message)  # str(error) stays the message, with or without the toolkit
        self.message = message
        self.status_code = self.status
        self.phrase = HTTPStatus(self.status).phrase

    def to_dict(self) -> dict:
        return {"error": self.reason, "status": self.status, "message": self.message}


class BadInput(InferenceError):
    """The body could not be decoded, or decodes to data of the wrong shape or range."""

    status = 400
    reason = "bad request"


class UnsupportedAccept(InferenceError):
    """No media type in the Accept header can be produced."""

    status = 406
    reason = "not acceptable"


class PayloadTooLarge(InferenceError):
    """The body is larger than the server's payload limit."""

    status = 413
    reason = "payload too large"


class UnsupportedContentType(InferenceError):
    """The Content-Type is not one the handler decodes."""

    status = 415
    reason = "unsupported media type"


class ServiceUnavailable(InferenceError):
    """The server cannot answer now: it is stopping, or the model is wedged."""

    status = 503
    reason = "service unavailable"


class PredictionTimeout(InferenceError):
    """The prediction was not done by the request's deadline (SAGEMAKER_MODEL_SERVER_TIMEOUT)."""

    status = 504
    reason = "gateway timeout"


class ModelLoadError(Exception):
    """The model_dir is missing a file or holds one that cannot be read; raised at start-up."""
