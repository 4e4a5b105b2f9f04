"""The request body for an endpoint's smoke invocation: one real input, else a blank image.

Images go as application/json {"instances": [{"image": "<base64>"}]}, which convlab's handler
decodes exactly like the raw image: a text body passes through every client and proxy
(and moto's SageMaker Runtime, which reads request bodies as UTF-8 text).
"""
from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

from deploy.stores import open_store


def blank_png(archive: Path) -> bytes:
    """A black PNG of the size and colour mode the model's config.json asks for."""
    from PIL import Image

    from deploy.register import archive_json

    prep = archive_json(archive, "config.json").get("preprocessing", {})
    size = (int(prep.get("width", 28)), int(prep.get("height", 28)))
    image = Image.new(prep.get("color_mode", "L"), size)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


IMAGE_TYPES = {"image/png", "image/jpeg", "application/x-image"}


def as_json_image(body: bytes) -> bytes:
    return json.dumps({"instances": [{"image": base64.b64encode(body).decode("ascii")}]}).encode()


def smoke_payload(source: str | None, archive: Path | None, s3: Any) -> tuple[bytes, str]:
    """(body, content type): the first object under `source`, or a blank PNG."""
    from deploy.transform import content_type_for

    if source:
        store = open_store(source, s3)
        first = next(iter(store.items()), None)
        if first is not None:
            body, content_type = store.read(first.relative), content_type_for(first.relative)
            if content_type in IMAGE_TYPES:
                return as_json_image(body), "application/json"
            return body, content_type
    if archive is None:
        raise ValueError("a smoke invocation needs an input image or the model archive")
    return as_json_image(blank_png(archive)), "application/json"
