"""The short PNG path gives exactly the pixels Pillow gives, and steps aside for anything else."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from inference import png_fast
from inference.decoders import decode_png
from inference.preprocessing import Preprocessing
from tests.fixtures_data import png_bytes


def pil_pixels(body: bytes, mode: str) -> np.ndarray:
    """What the Pillow path of the decoder gives (Image.open, then the model's preprocessing)."""
    prep = Preprocessing(height=28, width=28, channels=1 if mode == "L" else 3, rescale=1 / 255, color_mode=mode)
    return prep.image_to_array(Image.open(io.BytesIO(body)))[None]


def encode(array: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", **options)
    return buffer.getvalue()


def test_real_fashion_mnist_pngs_decode_to_pillows_pixels(fashion_test_images):
    images, _ = fashion_test_images
    for image in images[:200]:
        body = png_bytes(image)
        fast = png_fast.decode(body, 28, 28, "L", 1 / 255)
        assert fast is not None
        np.testing.assert_array_equal(fast, pil_pixels(body, "L"))


def test_rgb_and_every_compression_level_match(fashion_test_images):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)
    for level in (0, 1, 9):
        body = encode(rgb, compress_level=level)
        np.testing.assert_array_equal(png_fast.decode(body, 28, 28, "RGB", 1 / 255), pil_pixels(body, "RGB"))


def test_anything_else_steps_aside_for_pillow(fashion_test_images):
    gray = fashion_test_images[0][0][..., 0]
    good = encode(gray)
    cases = {
        "another size": png_fast.decode(good, 32, 32, "L", 1 / 255),
        "another colour mode": png_fast.decode(good, 28, 28, "RGB", 1 / 255),
        "16-bit": png_fast.decode(encode(gray.astype(np.uint16) * 257), 28, 28, "L", 1 / 255),
        "palette": png_fast.decode(_palette(gray), 28, 28, "L", 1 / 255),
        "truncated": png_fast.decode(good[: len(good) // 2], 28, 28, "L", 1 / 255),
        "bad CRC": png_fast.decode(good[:-5] + bytes([good[-5] ^ 0xFF]) + good[-4:], 28, 28, "L", 1 / 255),
        "not a PNG": png_fast.decode(b"GIF89a" + good, 28, 28, "L", 1 / 255),
    }
    assert {name: value for name, value in cases.items() if value is not None} == {}
    # Through the decoder, the fallback gives Pillow's pixels for a resized image.
    prep = Preprocessing(height=28, width=28, channels=1, rescale=1 / 255, color_mode="L")
    big = encode(np.resize(gray, (56, 56)).astype(np.uint8))
    assert decode_png(big, prep).shape == (1, 28, 28, 1)


def _palette(gray: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(gray).convert("P").save(buffer, format="PNG")
    return buffer.getvalue()
