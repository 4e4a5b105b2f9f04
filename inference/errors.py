"""Typed errors a request can cause, each carrying the HTTP status the server answers with."""
from __future__ import annotations


class InferenceError(Exception):
    """Base class: a problem with one request, reported to the client as JSON with `status`."""

    status = 500
    reason = "internal error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

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


class ModelLoadError(Exception):
    """The model_dir is missing a file or holds one that cannot be read; raised at start-up."""
