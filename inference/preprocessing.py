"""Turn decoded images and pixel arrays into the model's input, exactly as training scaled them.

docs/model_dir.md: decode -> convert to color_mode ("L" or "RGB", Pillow semantics) -> resize to
(width, height) with Pillow BILINEAR when the size differs -> float32 [H, W, C] -> multiply by
rescale. Arrays already at [H, W] / [H, W, C] with values 0..255 skip decoding; float arrays whose
values all lie in 0..1 (some not whole numbers) are taken as already scaled to 0..1. Where the
model's input.json maps photos (photo.py), images go through that mapping instead of the plain
conversion and resize, unless the request turned it off.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .errors import BadInput, ModelLoadError, PayloadTooLarge
from . import photo
from .photo import InputDescription, map_image

# A decoded image larger than this is refused before its pixels are decompressed.
MAX_IMAGE_PIXELS = 4096 * 4096
# At most this many float32 values (128 MiB) are produced for one request: tiny images resized up
# to the model's input would otherwise turn a small body into gigabytes.
MAX_BATCH_VALUES = 32 * 1024 * 1024
COLOR_MODES = {"L": 1, "RGB": 3}
_ARRAY_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
RAW, UNIT = "0..255", "0..1"  # pixel scalings a request may use
SCALINGS = (RAW, UNIT)
STEP_ORDER = {step: number for number, step in enumerate(photo.STEPS)}


@dataclass
class InputReport:
    """What one request's decoding did: the photo mapping's steps (in the order first taken) and
    the pixel scalings found. `mapping` is "on", "off" (the request turned it off) or "none" (the
    model maps no photos)."""

    mapping: str = "none"
    steps: dict = field(default_factory=dict)
    scalings: dict = field(default_factory=dict)

    def add(self, steps) -> None:
        self.steps.update(dict.fromkeys(steps))

    def summary(self) -> dict:
        if self.mapping != "on":
            photo = self.mapping
        else:
            taken = sorted(self.steps, key=lambda step: STEP_ORDER.get(step, len(STEP_ORDER)))
            photo = "+".join(taken) if taken else "unchanged"
        return {"photo_mapping": photo, "scaling": "+".join(self.scalings) or RAW}


@dataclass(frozen=True)
class Preprocessing:
    height: int
    width: int
    channels: int
    rescale: float
    color_mode: str
    description: InputDescription | None = None  # input.json; None: plain conversion and resize
    mapping: bool = True  # False: this request turned the photo mapping off
    scaling: str | None = None  # the request's pixel scaling (RAW or UNIT); None: detected
    report: InputReport | None = field(default=None, compare=False, hash=False)

    @property
    def maps_photos(self) -> bool:
        return self.mapping and self.description is not None and self.description.maps_objects

    def for_request(self, mapping: bool = True, scaling: str | None = None) -> "Preprocessing":
        """A copy for one request that records what it does into a fresh InputReport (`report`)."""
        kind = ("on" if mapping else "off") if self.description is not None and self.description.maps_objects \
            else "none"
        copy = object.__new__(Preprocessing)  # dataclasses.replace re-runs __init__: 4x the cost, per request
        copy.__dict__.update(self.__dict__, mapping=mapping, scaling=scaling, report=InputReport(mapping=kind))
        return copy

    def note(self, steps=(), scaling: str | None = None) -> None:
        if self.report is not None:
            self.report.add(steps)
            if scaling:
                self.report.scalings[scaling] = None

    @classmethod
    def from_config(cls, config: dict, source: str = "config.json") -> "Preprocessing":
        """Read the "preprocessing" object of a model_dir's config.json, naming any bad field."""
        block = config.get("preprocessing") if isinstance(config, dict) else None
        if not isinstance(block, dict):
            raise ModelLoadError(f"{source}: missing the \"preprocessing\" object "
                                 "(height, width, channels, rescale, color_mode; see docs/model_dir.md)")
        try:
            prep = cls(height=int(block["height"]), width=int(block["width"]), channels=int(block["channels"]),
                       rescale=float(block["rescale"]), color_mode=str(block["color_mode"]))
        except KeyError as exc:
            raise ModelLoadError(f"{source}: preprocessing.{exc.args[0]} is missing") from None
        except (TypeError, ValueError) as exc:
            raise ModelLoadError(f"{source}: preprocessing has a value of the wrong type ({exc})") from None
        if prep.color_mode not in COLOR_MODES:
            raise ModelLoadError(f"{source}: preprocessing.color_mode is {prep.color_mode!r}; expected \"L\" or \"RGB\"")
        if COLOR_MODES[prep.color_mode] != prep.channels:
            raise ModelLoadError(f"{source}: preprocessing.channels is {prep.channels} but color_mode "
                                 f"{prep.color_mode!r} has {COLOR_MODES[prep.color_mode]}")
        if prep.height < 1 or prep.width < 1:
            raise ModelLoadError(f"{source}: preprocessing height/width must be positive, got "
                                 f"{prep.height}x{prep.width}")
        return prep

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)

    @property
    def values_per_image(self) -> int:
        return self.height * self.width * self.channels

    def image_to_array(self, image: Image.Image) -> np.ndarray:
        """A decoded Pillow image as float32 [H, W, C], scaled."""
        image = _to_8bit(image)
        if self.maps_photos:
            steps: list[str] = []
            image = map_image(image, self.width, self.height, self.color_mode, self.description, steps)
            self.note(steps)
        if image.mode != self.color_mode:
            image = image.convert(self.color_mode)
        if image.size != (self.width, self.height):
            image = image.resize((self.width, self.height), Image.BILINEAR)
        array = np.asarray(image, dtype=np.float32)
        if array.ndim == 2:
            array = array[:, :, None]
        return array * np.float32(self.rescale)

    def arrays_to_batch(self, array: np.ndarray, what: str, scaling: str | None = None) -> np.ndarray:
        """Pixels (raw 0..255, or 0..1 as `scaling` says or the values show): one image [H, W] /
        [H, W, C] or a batch [N, H, W] / [N, H, W, C] -> float32 [N, H, W, C] at the model's size and
        channels, scaled."""
        array = _numeric(array, what)
        if array.ndim == 2:
            array = array[None, :, :, None]
        elif array.ndim == 3:
            # [H, W, C] when the last axis looks like channels, else a batch of one-channel images.
            array = array[None] if array.shape[-1] in _ARRAY_MODES else array[..., None]
        elif array.ndim != 4:
            raise BadInput(f"{what}: array of shape {list(array.shape)}; expected one image [H, W] or "
                           f"[H, W, C], or a batch [N, H, W] or [N, H, W, C] (model input {list(self.shape)})")
        if array.shape[0] == 0:
            raise BadInput(f"{what}: the batch is empty")
        if 0 in array.shape:
            raise BadInput(f"{what}: array of shape {list(array.shape)} holds no pixels; expected images "
                           f"of at least 1x1 (model input {list(self.shape)})")
        if array.shape[-1] not in _ARRAY_MODES:
            raise BadInput(f"{what}: {array.shape[-1]} channels in shape {list(array.shape)}; expected 1, 3 or 4")
        self.check_batch_size(len(array), what)
        scaling = _check_range(array, what, scaling or self.scaling)
        self.note(scaling=scaling)
        factor = 255.0 if scaling == UNIT else 1.0
        if array.shape[1:] == self.shape:
            return array.astype(np.float32) * np.float32(self.rescale * factor)
        return np.stack([self.image_to_array(_to_image(one * factor if factor != 1.0 else one)) for one in array])

    def check_batch_size(self, images: int, what: str) -> None:
        """Refuse (413) a request whose images, converted to the model's input, exceed MAX_BATCH_VALUES."""
        if images * self.values_per_image > MAX_BATCH_VALUES:
            raise PayloadTooLarge(f"{what}: {images} images at the model input {list(self.shape)} would be "
                           f"{images * self.values_per_image} values; at most {MAX_BATCH_VALUES} per request "
                           f"({MAX_BATCH_VALUES // self.values_per_image} images): send fewer images per request")

    def flat_to_batch(self, rows: np.ndarray, what: str, scaling: str | None = None) -> np.ndarray:
        """Rows of H*W*C raw pixel values (CSV, flat JSON instances) -> float32 [N, H, W, C]."""
        rows = _numeric(rows, what)
        if rows.ndim != 2 or rows.shape[1] != self.values_per_image:
            found = rows.shape[-1] if rows.ndim else 0
            raise BadInput(f"{what}: {found} values per image; expected {self.values_per_image} "
                           f"(height {self.height} x width {self.width} x channels {self.channels})")
        return self.arrays_to_batch(rows.reshape((-1, *self.shape)), what, scaling)


def open_image(body: bytes, formats: list[str] | None, what: str, draft: tuple | None = None) -> Image.Image:
    """Decode image bytes with Pillow, refusing corrupt data and oversized images. `draft` (mode,
    model size) lets a large JPEG decode at a reduced scale (photo.draft_size)."""
    import io

    from PIL import UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(body), formats=formats)
    except UnidentifiedImageError:
        raise BadInput(_unreadable(body, formats, what)) from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise BadInput(f"{what}: could not read the image ({exc})") from None
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        raise PayloadTooLarge(f"{what}: the image is {width}x{height} pixels; at most {MAX_IMAGE_PIXELS} pixels are decoded")
    size = photo.draft_size(image.size, draft[1][0], draft[1][1]) if draft else None
    try:
        mode = image.mode
        if size and image.draft(draft[0], size) is not None:
            image.info[photo.DECODED_FROM] = mode
        image.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise BadInput(f"{what}: the image data is corrupt or truncated ({exc})") from None
    return image


CONTENT_TYPE_OF_FORMAT = {"PNG": "image/png", "JPEG": "image/jpeg"}


def _unreadable(body: bytes, formats: list[str] | None, what: str) -> str:
    """Why the body is not an image of `formats`: the format it is in (and the Content-Type to
    send it with) when Pillow reads it as another one."""
    import io

    expected = " or ".join(formats) if formats else "an image format Pillow reads"
    if formats:
        try:
            found = Image.open(io.BytesIO(body)).format
        except Exception:  # noqa: BLE001 - no image format at all: the plain message
            found = None
        if found:
            content_type = CONTENT_TYPE_OF_FORMAT.get(found, "application/x-image")
            return (f"{what}: the body is {found} data, not {expected}; send it with Content-Type "
                    f"{content_type}" + ("" if content_type == "application/x-image" else
                                         " (or application/x-image, which reads any image format)"))
    return f"{what}: the body is not a readable image; expected {expected} bytes"


def _to_8bit(image: Image.Image) -> Image.Image:
    """A 16-bit grayscale image (PNG/TIFF mode I;16*) scaled to 0..255, as training's image folder
    reader does: Pillow's convert("L") would clip every value above 255 to white."""
    if not image.mode.startswith("I;16"):
        return image
    return Image.fromarray(np.rint(np.asarray(image, dtype=np.float64) / 257.0).astype(np.uint8), "L")


def _numeric(array: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype == bool:
        return array.astype(np.uint8)
    if array.dtype.kind not in "uif":
        raise BadInput(f"{what}: pixel values of dtype {array.dtype}; expected numbers (integers or floats)")
    return array


def _check_range(array: np.ndarray, what: str, scaling: str | None) -> str:
    """The scaling of the pixels: `scaling` when given (checked), else 0..1 for floats that all lie in
    0..1 with some not a whole number, else 0..255."""
    if array.dtype.kind == "u" and array.dtype.itemsize == 1 and scaling != UNIT:
        return RAW
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise BadInput(f"{what}: pixel values include NaN or infinity")
    low, high = array.min(), array.max()
    if scaling is None:
        whole = array.dtype.kind != "f" or bool(np.all(array == np.rint(array)))
        scaling = UNIT if low >= 0 and high <= 1 and not whole else RAW
    top = 1 if scaling == UNIT else 255
    if low < 0 or high > top:
        raise BadInput(f"{what}: pixel values range from {low} to {high}; expected pixels in {scaling} "
                       "(the server applies the model's rescale)")
    return scaling


def _to_image(array: np.ndarray) -> Image.Image:
    """One [H, W, C] raw-pixel array as a Pillow image, for colour conversion and resizing."""
    pixels = np.clip(np.rint(array), 0, 255).astype(np.uint8)
    if pixels.shape[-1] == 1:
        pixels = pixels[:, :, 0]
    return Image.fromarray(pixels)  # uint8 [H, W] -> "L", [H, W, 3] -> "RGB", [H, W, 4] -> "RGBA"
