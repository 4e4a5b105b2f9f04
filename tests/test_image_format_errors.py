"""An image sent with the wrong image Content-Type: the 400 names the format the body is and the
Content-Type to send it with, over a real socket to the real server."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from inference.local import LocalServer, request


def encoded(format_name: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((28, 28), 128, np.uint8)).save(buffer, format=format_name)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server(trained_model_dir, tmp_path_factory):
    with LocalServer(trained_model_dir, log_path=tmp_path_factory.mktemp("formats") / "server.log") as running:
        yield running


@pytest.mark.parametrize("sent_as, body_format, found, advice", [
    ("image/png", "JPEG", "JPEG", "Content-Type image/jpeg"),
    ("image/jpeg", "PNG", "PNG", "Content-Type image/png"),
    ("image/png", "GIF", "GIF", "Content-Type application/x-image"),
])
def test_an_image_sent_as_another_format_is_named(server, sent_as, body_format, found, advice):
    status, _, body = request(server.port, "POST", "/invocations", encoded(body_format),
                              {"Content-Type": sent_as, "Accept": "application/json"})
    message = json.loads(body)["message"]
    assert status == 400, message
    assert f"the body is {found} data, not {sent_as.split('/')[1].upper()}" in message, message
    assert advice in message, message
    assert "expected PNG bytes" not in message


def test_bytes_of_no_image_format_still_say_what_was_expected(server):
    status, _, body = request(server.port, "POST", "/invocations", b"not an image at all",
                              {"Content-Type": "image/png"})
    assert status == 400 and "not a readable image; expected PNG bytes" in json.loads(body)["message"]
