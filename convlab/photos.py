"""Photo-like versions of Fashion-MNIST-style test images, and a served model's accuracy on them.

A phone photo of a garment on a table differs from the data set's tile in the ways Fashion-MNIST's
conversion removed (Xiao, Rasul and Vollgraf 2017, section 2). photo_like() puts them back, seeded
per image (numpy's default_rng((seed, index))), so the same call always gives the same bytes:

    frame       wider than tall: width 256..400 pixels, aspect 4:3, 3:2 or 16:9
    size        the tile scaled up so the garment's box is 55..85 % of the frame's height
    offset      the garment off-centre: up to a quarter of the frame sideways, a tenth up or down
    background  light (each channel 185..245), with a lighting gradient of up to +-15 and noise
    tint        the garment a dark colour (each channel 15..110), the tile's intensity as its opacity
    JPEG        quality 75..92, RGB

accuracy_plain_vs_photo() runs convlab's handler in this process (model_fn, input_fn, predict_fn: the
code path every serving path shares) on the plain PNG tiles, on their photo-like JPEGs, and on the
JPEGs with the photo mapping turned off.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

ASPECTS = (4 / 3, 3 / 2, 16 / 9)


def photo_like(tile: np.ndarray, seed: int = 0, index: int = 0, frame: tuple[int, int] | None = None) -> bytes:
    """JPEG bytes of a photo-like version of one uint8 tile [H, W] or [H, W, 1] (a bright object on
    black, as Fashion-MNIST stores it); `frame` (width, height) fixes the frame's size."""
    rng = np.random.default_rng((seed, index))
    alpha = np.asarray(tile, dtype=np.float32).reshape(tile.shape[0], tile.shape[1]) / 255.0
    width = int(rng.integers(256, 401))
    height = int(round(width / ASPECTS[int(rng.integers(len(ASPECTS)))]))
    if frame:
        width, height = frame
    side = max(1, int(round(height * rng.uniform(0.55, 0.85))))
    scaled = np.asarray(Image.fromarray(np.uint8(np.rint(alpha * 255))).resize((side, side), Image.BICUBIC),
                        dtype=np.float32)[:, :, None] / 255.0
    room_x, room_y = max(0, width - side), max(0, height - side)
    left = int(np.clip(room_x / 2 + rng.uniform(-0.25, 0.25) * width, 0, room_x))
    top = int(np.clip(room_y / 2 + rng.uniform(-0.1, 0.1) * height, 0, room_y))
    colour = rng.uniform(185, 245, size=3).astype(np.float32)
    gradient = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :, None] * rng.uniform(-15, 15)
    frame = colour + gradient + rng.normal(0.0, 3.0, size=(height, width, 3)).astype(np.float32)
    tint = rng.uniform(15, 110, size=3).astype(np.float32)
    region = frame[top:top + side, left:left + side]
    frame[top:top + side, left:left + side] = region * (1.0 - scaled) + tint * scaled
    buffer = io.BytesIO()
    Image.fromarray(np.uint8(np.clip(np.rint(frame), 0, 255)), "RGB").save(
        buffer, "JPEG", quality=int(rng.integers(75, 93)))
    return buffer.getvalue()


def png_tile(tile: np.ndarray) -> bytes:
    """The tile as the data set's PNG."""
    buffer = io.BytesIO()
    array = np.asarray(tile, dtype=np.uint8)
    Image.fromarray(array[..., 0] if array.ndim == 3 else array).save(buffer, "PNG")
    return buffer.getvalue()


def _predict(handler, model, bodies: list[bytes], content_type: str, attributes: str | None) -> np.ndarray:
    from inference.context import RequestContext

    predicted = []
    for body in bodies:
        context = RequestContext(content_type, "application/json", attributes, model=model)
        batch = handler.input_fn(body, content_type, context=context)
        predicted.append(int(np.argmax(handler.predict_fn(batch, model)["probabilities"][0])))
    return np.asarray(predicted)


def accuracy_plain_vs_photo(model_dir, images: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict:
    """{"plain", "photo", "photo_unmapped", "images"}: the model's accuracy on the tiles as PNGs, on
    their photo-like JPEGs (photo_like with `seed`), and on those JPEGs with photo_mapping=off."""
    from inference import handler

    model = handler.model_fn(str(model_dir))
    labels = np.asarray(labels)
    plain = [png_tile(tile) for tile in images]
    photos = [photo_like(tile, seed, index) for index, tile in enumerate(images)]
    result = {"images": int(len(labels))}
    for name, bodies, content_type, attributes in (("plain", plain, "image/png", None),
                                                    ("photo", photos, "image/jpeg", None),
                                                    ("photo_unmapped", photos, "image/jpeg", "photo_mapping=off")):
        result[name] = float(np.mean(_predict(handler, model, bodies, content_type, attributes) == labels))
    return result
