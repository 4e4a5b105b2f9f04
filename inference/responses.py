"""What output_fn returns -> the response body and its content type: one rule for the server and
the local batch transform, the inference toolkit's.

A tuple is (body, content type); anything else is the body, answered as the Accept type
(application/json when the Accept header is absent or a wildcard). A body is bytes, bytearray,
memoryview, str (sent as UTF-8) or a numpy array, which is encoded for the content type as the
toolkit's encoders do (application/json, text/csv, application/x-npy). Any other type is refused
with an error naming it: an int is not silently sent as that many zero bytes.
"""
from __future__ import annotations

import io
import json

import numpy as np

DEFAULT_ACCEPT = "application/json"
BODY_TYPES = "bytes, bytearray, memoryview, str or a numpy array"


class OutputTypeError(TypeError):
    """output_fn returned something that is not a response body."""


def _media(accept: str | None) -> str:
    if not accept or not accept.strip() or "*" in accept or "," in accept:
        return DEFAULT_ACCEPT
    return accept.strip()


def _array_body(array: np.ndarray, media: str) -> bytes:
    kind = media.split(";")[0].strip().lower()
    if kind == "application/json":
        return json.dumps(array.tolist()).encode("utf-8")
    if kind == "text/csv":
        buffer = io.StringIO()
        np.savetxt(buffer, array if array.ndim else array[None], delimiter=",", fmt="%s")
        return buffer.getvalue().encode("utf-8")
    if kind == "application/x-npy":
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        return buffer.getvalue()
    raise OutputTypeError(f"output_fn returned a numpy array for content type {media!r}: arrays are encoded as "
                          "application/json, text/csv or application/x-npy; return bytes for other types")


def response_of(result, accept: str | None) -> tuple[bytes, str]:
    """(body bytes, content type) of what output_fn returned, for a request's Accept header."""
    if isinstance(result, tuple):
        if len(result) != 2 or not isinstance(result[1], (str, type(None))):
            raise OutputTypeError(f"output_fn returned a tuple of {len(result)} item(s): expected (body, content type) "
                                  "with the content type a str")
        body, media = result[0], result[1] or _media(accept)
    else:
        body, media = result, _media(accept)
    if isinstance(body, bytes):
        return body, media
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body), media
    if isinstance(body, str):
        return body.encode("utf-8"), media
    if isinstance(body, (np.ndarray, np.generic)):
        return _array_body(np.asarray(body), media), media
    raise OutputTypeError(f"output_fn returned {'an' if type(body).__name__[0] in 'aeiou' else 'a'} "
                          f"{type(body).__name__}: expected {BODY_TYPES}, or a (body, content type) tuple")
