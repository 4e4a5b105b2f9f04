"""Predictions -> response bodies, one encoder per Accept media type.

A prediction is {"probabilities": float32 [N, num_classes], "classes": [name, ...]}; a bare array
of probabilities is accepted too (classes are then named by index).
"""
from __future__ import annotations

import csv
import io
import json

import numpy as np

from .errors import UnsupportedAccept

JSON = "application/json"
JSONLINES = "application/jsonlines"
NPY = "application/x-npy"
CSV = "text/csv"
DEFAULT_ACCEPT = JSON
_WILDCARDS = {"*/*": DEFAULT_ACCEPT, "application/*": JSON, "text/*": CSV}
_ALIASES = {"application/jsonl": JSONLINES, "application/x-jsonlines": JSONLINES,
            "application/json-lines": JSONLINES}


def choose_accept(accept: str | None) -> str:
    """The media type to answer with for an Accept header (q-values honoured); UnsupportedAccept
    when none of the listed types can be produced."""
    if not accept or not accept.strip():
        return DEFAULT_ACCEPT
    choices = []
    for position, part in enumerate(accept.split(",")):
        fields = [field.strip() for field in part.split(";")]
        media, quality = fields[0].lower(), 1.0
        for param in fields[1:]:
            if param.lower().startswith("q="):
                try:
                    quality = float(param[2:])
                except ValueError:
                    quality = 0.0
        if media and quality > 0:
            choices.append((-quality, position, media))
    for _, _, media in sorted(choices):
        media = _WILDCARDS.get(media, _ALIASES.get(media, media))
        if media in ENCODERS:
            return media
    raise UnsupportedAccept(f"Accept {accept!r}: can answer with {', '.join(ENCODERS)}")


def as_prediction(prediction) -> tuple[np.ndarray, list[str]]:
    if isinstance(prediction, dict) and "probabilities" in prediction:
        probabilities = np.asarray(prediction["probabilities"], dtype=np.float32)
        classes = list(prediction.get("classes") or [])
    else:
        probabilities, classes = np.asarray(prediction, dtype=np.float32), []
    if probabilities.ndim == 1:
        probabilities = probabilities[None]
    if probabilities.ndim != 2:
        raise ValueError(f"prediction: probabilities of shape {list(probabilities.shape)}; expected [N, classes]")
    if len(classes) != probabilities.shape[1]:
        classes = [str(index) for index in range(probabilities.shape[1])]
    return probabilities, classes


def _rows(prediction) -> list[dict]:
    probabilities, classes = as_prediction(prediction)
    indices = probabilities.argmax(axis=1).tolist()
    rows = probabilities.tolist()
    return [{"label": classes[index], "class_index": index,
             "probabilities": dict(zip(classes, row))} for index, row in zip(indices, rows)]


def encode_json(prediction, record_sizes=None, report=None) -> bytes:
    document = {"predictions": _rows(prediction)}
    if report:
        document["input"] = report
    return json.dumps(document).encode("utf-8")


def encode_jsonlines(prediction, record_sizes=None, report=None) -> bytes:
    """One line per input record, each the JSON answer for that record alone
    ({"predictions": [...]}); without record sizes every image is a record."""
    rows = _rows(prediction)
    sizes = list(record_sizes) if record_sizes and sum(record_sizes) == len(rows) else [1] * len(rows)
    lines, start = [], 0
    for size in sizes:
        line = {"predictions": rows[start:start + size]}
        if report:
            line["input"] = report
        lines.append(json.dumps(line))
        start += size
    return ("\n".join(lines) + "\n").encode("utf-8")


def encode_npy(prediction, record_sizes=None, report=None) -> bytes:
    probabilities, _ = as_prediction(prediction)
    buffer = io.BytesIO()
    np.save(buffer, probabilities, allow_pickle=False)
    return buffer.getvalue()


def encode_csv(prediction, record_sizes=None, report=None) -> bytes:
    """One row per image: label, class index, then the probability of each class in class order."""
    probabilities, classes = as_prediction(prediction)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for index, row in zip(probabilities.argmax(axis=1).tolist(), probabilities.tolist()):
        writer.writerow([classes[index], index, *(repr(value) for value in row)])
    return buffer.getvalue().encode("utf-8")


ENCODERS = {JSON: encode_json, JSONLINES: encode_jsonlines, NPY: encode_npy, CSV: encode_csv}


def encode(prediction, accept: str | None, record_sizes: list[int] | None = None,
           report: dict | None = None) -> tuple[bytes, str]:
    """The body and media type for the Accept header; JSON Lines answers one line per record. JSON
    and JSON Lines answers carry `report` (what the decoding did) as "input"."""
    media = choose_accept(accept)
    return ENCODERS[media](prediction, record_sizes, report), media
