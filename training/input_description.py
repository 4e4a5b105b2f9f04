"""What the model's inputs look like, measured on the training images: input.json in the model_dir.

Serving reads it to map a photo into the model's domain (docs/model_dir.md). Everything here is
measured on the pixels, never taken from the data set's name:

- background: the level of each image's 1-pixel border ring. "dark" or "light" when most images
  have a border of one even level near black or near white (Fashion-MNIST, MNIST, scans of objects
  on paper); "varied" otherwise (natural images such as CIFAR-10).
- the object: pixels that differ from the image's own border level by more than a threshold; its
  bounding box gives how much of the frame it fills (longest edge over frame edge) and how far its
  centre sits from the frame's centre; its peak contrast is its largest difference from the border.
- photo_mapping "object" when the background is even and the objects are centred, else "none":
  only then does a server find, crop, centre and re-tone an object in a photo.

numpy only: this module runs in AWS's training container, where the package is uploaded alone.
"""
from __future__ import annotations

import numpy as np

SAMPLE = 2000  # images measured (seeded sample): the statistics settle long before
EVEN_SPREAD = 32  # a border ring is even when 60 % of its pixels lie within this of its median
EVEN_SHARE = 0.6
DARK_LEVEL, LIGHT_LEVEL = 64, 191  # a border median below / above this is dark / light
UNIFORM_IMAGES = 0.8  # share of images with an even border of one polarity for "dark" / "light"
OBJECT_THRESHOLD = 40  # a pixel belongs to the object when it differs this much from the border level
CENTRED_OFFSET = 0.1  # median centre offset (fraction of the frame) below which objects are centred
VERSION = 1


def _gray(images: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W, C] -> float32 [N, H, W] (ITU-R 601 luma, as Pillow's convert("L"))."""
    pixels = images.astype(np.float32)
    if pixels.shape[-1] == 3:
        return pixels @ np.array([0.299, 0.587, 0.114], np.float32)
    return pixels[..., 0]


def _ring(gray: np.ndarray) -> np.ndarray:
    """The 1-pixel border of every image, [N, 2 * (H + W) - 4]."""
    return np.concatenate([gray[:, 0, :], gray[:, -1, :], gray[:, 1:-1, 0], gray[:, 1:-1, -1]], axis=1)


def _objects(gray: np.ndarray, level: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per image with an object: the share of the frame its bounding box fills (longest edge), the
    offset of the box's centre from the frame's centre (fraction of the frame, larger axis) and the
    object's peak contrast (largest difference from the border level)."""
    count, height, width = gray.shape
    contrast = np.abs(gray - level[:, None, None])
    mask = contrast > OBJECT_THRESHOLD
    rows, cols = mask.any(axis=2), mask.any(axis=1)
    found = rows.any(axis=1)
    top, bottom = rows.argmax(axis=1), height - 1 - rows[:, ::-1].argmax(axis=1)
    left, right = cols.argmax(axis=1), width - 1 - cols[:, ::-1].argmax(axis=1)
    fill = np.maximum((bottom - top + 1) / height, (right - left + 1) / width)
    offset = np.maximum(np.abs((top + bottom) / 2 - (height - 1) / 2) / height,
                        np.abs((left + right) / 2 - (width - 1) / 2) / width)
    return fill[found], offset[found], contrast.max(axis=(1, 2))[found]


def describe_inputs(images: np.ndarray, seed: int = 0) -> dict:
    """The input.json document for uint8 training images [N, H, W, C]."""
    images = np.asarray(images)
    if images.ndim != 4 or not len(images):
        raise ValueError(f"training images of shape {list(images.shape)}; expected [N, H, W, C]")
    count, height, width, channels = images.shape
    if count > SAMPLE:
        images = images[np.sort(np.random.default_rng(seed).choice(count, SAMPLE, replace=False))]
    document = {"version": VERSION, "height": height, "width": width, "channels": channels,
                "color_mode": "L" if channels == 1 else "RGB", "measured_images": int(len(images))}
    if min(height, width) < 3:
        return {**document, "background": "varied", "photo_mapping": "none"}
    gray = _gray(images)
    ring = _ring(gray)
    level = np.median(ring, axis=1)
    even = (np.abs(ring - level[:, None]) <= EVEN_SPREAD).mean(axis=1) >= EVEN_SHARE
    dark, light = even & (level < DARK_LEVEL), even & (level > LIGHT_LEVEL)
    background = ("dark" if dark.mean() >= UNIFORM_IMAGES else
                  "light" if light.mean() >= UNIFORM_IMAGES else "varied")
    document.update(background=background, background_level=round(float(np.median(level)), 1),
                    even_border_share=round(float(even.mean()), 3),
                    background_color=[round(float(v), 1) for v in np.median(images[:, 0, :, :], axis=(0, 1))])
    if background == "varied":
        return {**document, "photo_mapping": "none"}
    uniform = dark if background == "dark" else light
    fill, offset, peak = _objects(gray[uniform], level[uniform])
    if not len(fill):
        return {**document, "photo_mapping": "none"}
    median_offset = float(np.median(offset))
    centred = median_offset <= CENTRED_OFFSET
    document.update(object_fill=round(float(np.median(fill)), 3), object_offset=round(median_offset, 3),
                    object_peak=round(float(np.median(peak)), 1),
                    objects_centred=bool(centred), object_threshold=OBJECT_THRESHOLD,
                    photo_mapping="object" if centred else "none")
    return document
