"""Request bodies -> the model's input batch, one decoder per content type.

Every decoder returns float32 [N, H, W, C], already converted and scaled by the model's
Preprocessing, or raises BadInput naming what was wrong and what was expected.
"""
from __future__ import annotations

import base64
import binascii
import io
import json

import numpy as np

from . import photo, png_fast
from .errors import BadInput, UnsupportedContentType
from .preprocessing import SCALINGS, Preprocessing, open_image

PNG = "image/png"
JPEG = "image/jpeg"
X_IMAGE = "application/x-image"
JSON = "application/json"
JSONLINES = "application/jsonlines"
NPY = "application/x-npy"
CSV = "text/csv"
ALIASES = {"image/jpg": JPEG, "application/npy": NPY, "application/jsonl": JSONLINES,
           "application/x-jsonlines": JSONLINES, "application/json-lines": JSONLINES}


def media_type(header: str | None) -> str:
    """`Image/PNG; charset=...` -> `image/png`."""
    if not header:
        return ""
    base = header.split(";", 1)[0].strip().lower()
    return ALIASES.get(base, base)


def decode_png(body: bytes, prep: Preprocessing) -> np.ndarray:
    pixels = png_fast.decode(body, prep.height, prep.width, prep.color_mode, prep.rescale)
    if pixels is not None and (not prep.maps_photos or prep.color_mode != "L"
                               or photo.unchanged(pixels, prep.description, prep.rescale)):
        return pixels
    return prep.image_to_array(open_image(body, ["PNG"], PNG))[None]


def _draft(prep: Preprocessing) -> tuple | None:
    """What a JPEG decoder may reduce to: only for the photo mapping, which works on reduced photos."""
    return (prep.color_mode, (prep.width, prep.height)) if prep.maps_photos else None


def decode_jpeg(body: bytes, prep: Preprocessing) -> np.ndarray:
    return prep.image_to_array(open_image(body, ["JPEG"], JPEG, _draft(prep)))[None]


def decode_any_image(body: bytes, prep: Preprocessing) -> np.ndarray:
    return prep.image_to_array(open_image(body, None, X_IMAGE, _draft(prep)))[None]


def decode_npy(body: bytes, prep: Preprocessing) -> np.ndarray:
    try:
        array = np.load(io.BytesIO(body), allow_pickle=False)
    except ValueError as exc:
        raise BadInput(f"{NPY}: not a .npy array without pickled objects ({exc})") from None
    except (OSError, EOFError) as exc:
        raise BadInput(f"{NPY}: not a readable .npy file ({exc})") from None
    if isinstance(array, np.lib.npyio.NpzFile):
        raise BadInput(f"{NPY}: got an .npz archive; send one array written by numpy.save")
    return prep.arrays_to_batch(array, NPY)


def decode_csv(body: bytes, prep: Preprocessing) -> np.ndarray:
    text = _text(body, CSV)
    lines = text.splitlines()
    prep.check_batch_size(sum(1 for line in lines if line.strip()), f"{CSV} rows")
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append([float(cell) for cell in line.split(",")])
        except ValueError:
            raise BadInput(f"{CSV}: row {number} holds a value that is not a number; expected one image per "
                           f"row as {prep.values_per_image} comma-separated pixel values") from None
        if len(rows[-1]) != prep.values_per_image:
            raise BadInput(f"{CSV}: row {number} has {len(rows[-1])} values; expected {prep.values_per_image} "
                           f"(height {prep.height} x width {prep.width} x channels {prep.channels})")
    if not rows:
        raise BadInput(f"{CSV}: the body holds no rows; expected one image per row")
    return prep.flat_to_batch(np.asarray(rows, dtype=np.float32), CSV)


def decode_json(body: bytes, prep: Preprocessing) -> np.ndarray:
    """{"instances": [pixels | {"image": b64}, ...]}, {"image": b64}, or a list of either."""
    return _json_document(_parse_json(_text(body, JSON), JSON), prep)


def _parse_json(text: str, what: str, invalid: str = "{what}: not valid JSON ({exc})"):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(invalid.format(what=what, exc=exc)) from None
    except RecursionError:
        raise BadInput(f"{what}: the JSON is nested too deeply to decode; expected \"instances\" as "
                       "lists of pixel rows (at most 4 levels) or {\"image\": \"<base64>\"} objects") from None


def decode_jsonlines_records(body: bytes, prep: Preprocessing) -> tuple[np.ndarray, list[int]]:
    """One JSON record per line ({"image": b64}, {"instances": [...]}, or a pixel list); blank
    lines are skipped. Returns the batch and the number of images each record gave."""
    arrays, sizes = [], []
    for number, line in enumerate(_text(body, JSONLINES).splitlines(), start=1):
        if not line.strip():
            continue
        document = _parse_json(line, f"{JSONLINES} line {number}", f"{JSONLINES}: line {number} is not valid JSON "
                               "({exc}); expected one JSON record per line")
        try:
            array = _json_document(document if not isinstance(document, list) else {"instances": [document]}, prep)
        except BadInput as exc:
            raise BadInput(f"{JSONLINES} line {number}: {exc.message}") from None
        arrays.append(array)
        sizes.append(len(array))
    if not arrays:
        raise BadInput(f"{JSONLINES}: the body holds no records; expected one JSON record per line")
    prep.check_batch_size(sum(sizes), f"{JSONLINES} records")
    return (arrays[0] if len(arrays) == 1 else np.concatenate(arrays)), sizes


def decode_jsonlines(body: bytes, prep: Preprocessing) -> np.ndarray:
    return decode_jsonlines_records(body, prep)[0]


def _json_scaling(document, what: str) -> str | None:
    """The "scale" field of a JSON request ("0..255" or "0..1"), or None to detect it."""
    if not isinstance(document, dict) or "scale" not in document:
        return None
    scale = document["scale"]
    if scale in (255, "255"):
        scale = SCALINGS[0]
    elif scale in (1, "1"):
        scale = SCALINGS[1]
    if scale not in SCALINGS:
        raise BadInput(f"{what}: \"scale\" is {scale!r}; expected \"0..255\" (raw pixels) or \"0..1\"")
    return scale


def _json_document(document, prep: Preprocessing) -> np.ndarray:
    scaling = _json_scaling(document, JSON)
    if isinstance(document, dict):
        if "instances" in document:
            instances = document["instances"]
        elif "image" in document or "b64" in document:
            instances = [document]
        else:
            raise BadInput(f"{JSON}: object with keys {sorted(document)[:5]}; expected \"instances\" "
                           "(a list of images) or \"image\" (a base64-encoded PNG/JPEG)")
    elif isinstance(document, list):
        instances = document
    else:
        raise BadInput(f"{JSON}: a {type(document).__name__} at the top level; expected an object "
                       "with \"instances\" or \"image\"")
    if not isinstance(instances, list) or not instances:
        raise BadInput(f"{JSON}: \"instances\" must be a non-empty list of images")
    prep.check_batch_size(len(instances), f"{JSON} instances")
    if all(isinstance(one, dict) for one in instances):
        return np.concatenate([_json_image(one, index, prep) for index, one in enumerate(instances)])
    if any(isinstance(one, dict) for one in instances):
        raise BadInput(f"{JSON}: \"instances\" mixes objects and pixel lists; send one kind")
    try:
        array = np.asarray(instances, dtype=np.float32)
    except (ValueError, TypeError, RecursionError):
        # Ragged: images of different sizes, converted one at a time.
        return np.concatenate([_json_pixels(one, index, prep, scaling) for index, one in enumerate(instances)])
    if array.ndim == 2:
        return prep.flat_to_batch(array, f"{JSON} instances", scaling)
    if array.ndim in (3, 4):
        return prep.arrays_to_batch(array if array.ndim == 4 else _batch_of_2d(array), f"{JSON} instances", scaling)
    raise BadInput(f"{JSON}: instances of shape {list(array.shape[1:])}; expected nested pixel lists "
                   f"[H][W] or [H][W][C] (model input {list(prep.shape)}) or flat lists of "
                   f"{prep.values_per_image} values")


def _batch_of_2d(array: np.ndarray) -> np.ndarray:
    """Instances [N, H, W] from JSON are always a batch of one-channel images."""
    return array[..., None]


def _json_pixels(instance, index: int, prep: Preprocessing, scaling: str | None) -> np.ndarray:
    what = f"{JSON} instances[{index}]"
    try:
        array = np.asarray(instance, dtype=np.float32)
    except (ValueError, TypeError, RecursionError):
        raise BadInput(f"{what}: not a rectangular nested list of numbers") from None
    if array.ndim == 1:
        return prep.flat_to_batch(array[None], what, scaling)
    if array.ndim not in (2, 3):
        raise BadInput(f"{what}: shape {list(array.shape)}; expected [H][W] or [H][W][C] pixel lists")
    return prep.arrays_to_batch(array, what, scaling)


def _json_image(instance: dict, index: int, prep: Preprocessing) -> np.ndarray:
    what = f"{JSON} instances[{index}]"
    encoded = instance.get("image", instance.get("b64"))
    if not isinstance(encoded, str):
        raise BadInput(f"{what}: expected {{\"image\": \"<base64 PNG or JPEG>\"}}, got keys {sorted(instance)[:5]}")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise BadInput(f"{what}.image: not valid base64") from None
    return prep.image_to_array(open_image(raw, None, f"{what}.image", _draft(prep)))[None]


def _text(body: bytes, what: str) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInput(f"{what}: the body is not UTF-8 text ({exc})") from None


DECODERS = {
    PNG: decode_png,
    JPEG: decode_jpeg,
    X_IMAGE: decode_any_image,
    JSON: decode_json,
    JSONLINES: decode_jsonlines,
    NPY: decode_npy,
    CSV: decode_csv,
}


def check_content_type(content_type: str | None) -> str:
    """The media type of a supported Content-Type header; UnsupportedContentType (415) otherwise."""
    kind = media_type(content_type)
    if kind not in DECODERS:
        given = f"Content-Type {content_type!r}" if content_type else "no Content-Type header"
        raise UnsupportedContentType(f"{given}; supported: {', '.join(DECODERS)}")
    return kind


def decode(body: bytes, content_type: str | None, prep: Preprocessing) -> np.ndarray:
    """Decode a request body by its Content-Type into float32 [N, H, W, C]."""
    kind = check_content_type(content_type)
    decoder = DECODERS[kind]
    if not body:
        raise BadInput(f"{kind}: the request body is empty")
    return decoder(body, prep)


def decode_records(body: bytes, content_type: str | None, prep: Preprocessing) -> tuple[np.ndarray, list[int] | None]:
    """decode(), plus the images per input record for JSON Lines bodies (None otherwise: then
    every image is a record)."""
    if check_content_type(content_type) == JSONLINES and body:
        return decode_jsonlines_records(body, prep)
    return decode(body, content_type, prep), None
