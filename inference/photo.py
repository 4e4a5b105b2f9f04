"""Map a photo into the model's input domain, as input.json describes it (docs/model_dir.md).

For a model whose training images show one object on an even background (input.json
"photo_mapping": "object"), a photo goes through the steps Fashion-MNIST's authors applied to product
photos (Xiao, Rasul and Vollgraf 2017, section 2), in Pillow and numpy only:

    find      the background level from the photo's border ring, the object as the pixels that
              differ from it by more than the border's own noise
    crop      to the object's bounding box
    centre    pad to a square, the object centred, its longest edge filling the share of the frame
              the training objects filled (object_fill)
    resize    to the model's size (Pillow BILINEAR)
    negate    when the photo's background polarity differs from the model's (a light table for a
              dark-background model); "level" when only the background level differs
    stretch   the object's contrast to the training objects' peak (object_peak)

An image already at the model's size keeps its pixels, unless its background polarity or level
differs from the model's (then only the tone steps run). Models described "photo_mapping": "none"
(natural images) and models without input.json get the plain resize of preprocessing.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from .errors import ModelLoadError

BACKGROUNDS = ("dark", "light", "varied")
MAPPINGS = ("object", "none")
WORK_SCALE = 4  # photos are reduced until their short side is about this many model sizes
MIN_THRESHOLD = 24.0  # object pixels differ from the background by at least this (0..255)
NOISE_FACTOR = 4.0  # ... and by this many median deviations of the border ring
LEVEL_TOLERANCE = 32.0  # a background within this of the model's level needs no "level" step
MIN_LINE_SHARE = 0.02  # a row or column belongs to the object when this share of it is object
PEAK_PERCENTILE = 99.5
STRETCH_TOLERANCE = 0.1  # an object peak within 10 % of the training objects' is left as it is
STEPS = ("grayscale", "crop", "centre", "no object found", "resize", "negate", "level", "stretch")
DECODED_FROM = "convlab_decoded_from"  # image.info key: the mode a JPEG had before a reduced decode


@dataclass(frozen=True)
class InputDescription:
    """The part of input.json serving uses."""

    background: str = "varied"
    photo_mapping: str = "none"
    background_level: float = 0.0
    object_fill: float = 1.0
    object_peak: float = 255.0

    @classmethod
    def from_document(cls, document, source: str = "input.json") -> "InputDescription":
        if not isinstance(document, dict):
            raise ModelLoadError(f"{source}: expected a JSON object (see docs/model_dir.md)")
        try:
            found = cls(background=str(document.get("background", "varied")),
                        photo_mapping=str(document.get("photo_mapping", "none")),
                        background_level=float(document.get("background_level", 0.0)),
                        object_fill=float(document.get("object_fill", 1.0)),
                        object_peak=float(document.get("object_peak", 255.0)))
        except (TypeError, ValueError) as exc:
            raise ModelLoadError(f"{source}: a value of the wrong type ({exc}); see docs/model_dir.md") from None
        for name, allowed in (("background", BACKGROUNDS), ("photo_mapping", MAPPINGS)):
            if getattr(found, name) not in allowed:
                raise ModelLoadError(f"{source}: {name} is {getattr(found, name)!r}; expected one of {allowed}")
        if not 0.0 < found.object_fill <= 1.0 or not 0.0 < found.object_peak <= 255.0:
            raise ModelLoadError(f"{source}: object_fill must be in (0, 1] and object_peak in (0, 255], got "
                                 f"{found.object_fill} and {found.object_peak}")
        if found.photo_mapping == "object" and found.background == "varied":
            raise ModelLoadError(f"{source}: photo_mapping \"object\" needs a \"dark\" or \"light\" background")
        return found

    @property
    def maps_objects(self) -> bool:
        return self.photo_mapping == "object"

    @property
    def light(self) -> bool:
        return self.background == "light"


def draft_size(size: tuple[int, int], width: int, height: int) -> tuple[int, int] | None:
    """The size to ask a JPEG decoder for (Pillow's draft), or None to decode it whole."""
    side = WORK_SCALE * max(width, height)
    if min(size) < 2 * side:
        return None
    factor = min(size) / side
    return int(size[0] / factor), int(size[1] / factor)


def _work_image(image: Image.Image, width: int, height: int) -> Image.Image:
    factor = min(image.size) // (WORK_SCALE * max(width, height))
    return image.reduce(factor) if factor >= 2 else image


def _ring(gray: np.ndarray) -> np.ndarray:
    if min(gray.shape[:2]) < 2:
        return gray.reshape(-1, *gray.shape[2:])
    return np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])


def _median_u8(values: np.ndarray) -> int:
    """The (lower) median of uint8 values, from their histogram: a fraction of np.median's cost."""
    return int(np.searchsorted(np.cumsum(np.bincount(values.ravel(), minlength=256)), (values.size + 1) // 2))


def _background(gray: np.ndarray) -> tuple[int, int]:
    """(level, noise) of a uint8 image's border ring: its median and median absolute deviation."""
    ring = _ring(gray)
    level = _median_u8(ring)
    return level, _median_u8(np.abs(ring.astype(np.int16) - level).astype(np.uint8))


def _object_box(gray: np.ndarray, level: int, noise: int) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of the pixels that stand out from the background, or None."""
    mask = np.abs(gray.astype(np.int16) - level) > max(MIN_THRESHOLD, NOISE_FACTOR * noise)
    rows = np.flatnonzero(np.count_nonzero(mask, axis=1) > MIN_LINE_SHARE * gray.shape[1])
    cols = np.flatnonzero(np.count_nonzero(mask, axis=0) > MIN_LINE_SHARE * gray.shape[0])
    if not len(rows) or not len(cols):
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _fill_colour(image: Image.Image, level: int):
    if image.mode == "L":
        return level
    return tuple(int(c) for c in np.median(_ring(np.asarray(image)), axis=0))


def _centre(image: Image.Image, box, fill: float, level: int) -> Image.Image:
    """The object cropped and padded to a square in the background's colour, centred, its longest
    edge `fill` of the square."""
    crop = image.crop(box)
    side = max(1, int(round(max(crop.size) / fill)))
    square = Image.new(image.mode, (side, side), _fill_colour(image, level))
    square.paste(crop, ((side - crop.size[0]) // 2, (side - crop.size[1]) // 2))
    return square


def _tone(gray: np.ndarray, light: bool, description: InputDescription, steps: list[str]) -> np.ndarray:
    """A uint8 grayscale image -> float pixels with the model's background level and polarity, the
    object's contrast stretched to the training objects' peak."""
    level, noise = _background(gray)
    pixels = gray.astype(np.float32)
    contrast = (level - pixels) if light else (pixels - level)
    contrast = np.maximum(contrast - 2.0 * noise, 0.0)
    steps.append("negate" if light != description.light else "level")
    flat = contrast.ravel()
    rank = min(flat.size - 1, int(flat.size * PEAK_PERCENTILE / 100))
    peak = float(np.partition(flat, rank)[rank])
    if peak > MIN_THRESHOLD and abs(description.object_peak / peak - 1.0) > STRETCH_TOLERANCE:
        contrast *= description.object_peak / peak
        steps.append("stretch")
    model_level = description.background_level
    toned = model_level - contrast if description.light else model_level + contrast
    return np.clip(toned, 0.0, 255.0)


def map_image(image: Image.Image, width: int, height: int, color_mode: str, description: InputDescription,
              steps: list[str]) -> Image.Image:
    """An 8-bit Pillow image -> the model's size and colour mode, mapped as the module describes;
    the steps taken are appended to `steps`."""
    if image.mode not in ("L", "RGB"):
        image = image.convert("L" if image.mode in ("1", "LA", "I", "F") else "RGB")
    if color_mode == "L" and (image.mode != "L" or image.info.get(DECODED_FROM, "L") != "L"):
        steps.append("grayscale")
    work = _work_image(image, width, height).convert(color_mode)
    gray = np.asarray(work if color_mode == "L" else work.convert("L"))
    level, noise = _background(gray)
    light = level > 127.5
    if work.size != (width, height):
        box = _object_box(gray, level, noise)
        if box is None:
            steps.append("no object found")
        else:
            work = _centre(work, box, description.object_fill, level)
            steps += ["crop", "centre"]
        work = work.resize((width, height), Image.BILINEAR)
        steps.append("resize")
    elif light == description.light and abs(level - description.background_level) <= LEVEL_TOLERANCE:
        return work
    if color_mode != "L":
        if light != description.light:
            steps.append("negate")
            return Image.fromarray(255 - np.asarray(work))
        return work
    toned = _tone(np.asarray(work), light, description, steps)
    return Image.fromarray(np.rint(toned).astype(np.uint8), "L")


@lru_cache(maxsize=8)
def _ring_index(height: int, width: int) -> np.ndarray:
    """Flat indices of the border ring of a height x width image."""
    index = np.arange(height * width).reshape(height, width)
    return _ring(index)


def unchanged(pixels: np.ndarray, description: InputDescription, rescale: float) -> bool:
    """True when a decoded image already at the model's size (float32 [1, H, W, 1] scaled by
    `rescale`) needs no tone step: the median of its border ring lies within LEVEL_TOLERANCE of the
    model's background level. Two numpy calls: this runs on every such image."""
    height, width = pixels.shape[1:3]
    if min(height, width) < 2:
        return True
    ring = pixels.reshape(-1)[_ring_index(height, width)]
    middle = len(ring) // 2
    level = float(np.partition(ring, middle)[middle]) / rescale
    return abs(level - description.background_level) <= LEVEL_TOLERANCE
