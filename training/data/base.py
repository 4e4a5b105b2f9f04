"""The in-memory image set every reader returns, its error type, and the checks all readers share."""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

log = logging.getLogger("training.data")

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]

# sha256 of the label bytes of the published Fashion-MNIST train (60000) and test (10000) sets:
# an unmodified upload is recognised even when its files and folders carry no telling name.
FASHION_MNIST_LABEL_SHA256 = {
    60000: "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7",
    10000: "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9",
}

# A channel may name the classes of a format that carries no names (IDX, CSV, npz) in one of these
# files beside its data; convlab writes the first.
CLASS_FILES = ("classes.json", "labels.json", "classes.txt")
CLASSES_FILE = CLASS_FILES[0]

MAX_RAW_LABEL = 255


class DataError(ValueError):
    """Input data that cannot be used; the message names the file or channel and the problem."""


@dataclass
class ImageSet:
    images: np.ndarray  # uint8 (N, H, W, C)
    labels: np.ndarray  # int64 (N,)
    classes: list[str]
    source: str

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise DataError(f"{self.source}: images must be uint8 (N, H, W, C); "
                            f"got {self.images.dtype} {self.images.shape}")
        if self.labels.ndim != 1 or len(self.labels) != len(self.images):
            raise DataError(f"{self.source}: {len(self.images)} images but labels of shape "
                            f"{self.labels.shape}; expected one label per image")
        self.labels = self.labels.astype(np.int64, copy=False)
        self.classes = [str(c) for c in self.classes]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(height, width, channels)."""
        return tuple(int(d) for d in self.images.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, indices: np.ndarray) -> "ImageSet":
        return ImageSet(self.images[indices], self.labels[indices], list(self.classes), self.source)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.classes))


def digit_names(count: int) -> list[str]:
    return [str(i) for i in range(count)]


def is_digit_names(classes: Sequence[str]) -> bool:
    return list(classes) == digit_names(len(classes))


def to_labels(raw: np.ndarray, where: str) -> np.ndarray:
    """Integer labels from an array of any numeric dtype; (N,), (N, 1) and one-hot (N, K) accepted."""
    raw = np.asarray(raw)
    if raw.ndim == 2 and raw.shape[1] == 1:
        raw = raw[:, 0]
    elif raw.ndim == 2 and raw.shape[1] > 1:
        if not np.isin(raw, (0, 1)).all() or not (raw.sum(axis=1) == 1).all():
            raise DataError(f"{where}: labels of shape {raw.shape} are not one-hot rows; "
                            "expected integer class ids of shape (N,)")
        raw = raw.argmax(axis=1)
    if raw.ndim != 1:
        raise DataError(f"{where}: labels have shape {raw.shape}; expected (N,) integer class ids")
    if raw.dtype.kind not in "iub":
        if raw.dtype.kind != "f":
            raise DataError(f"{where}: labels have dtype {raw.dtype}; expected integer class ids")
        bad = np.flatnonzero(~np.isfinite(raw) | (raw != np.round(raw)))
        if bad.size:
            raise DataError(f"{where}: label {raw[bad[0]]!r} at index {bad[0]} is not an integer class id")
    return raw.astype(np.int64)


def check_label_range(labels: np.ndarray, limit: int, where: str, what: str) -> None:
    """Every label in 0..limit-1, else a DataError naming the first offending index and value."""
    if labels.size == 0:
        return
    bad = np.flatnonzero((labels < 0) | (labels >= limit))
    if bad.size:
        i = int(bad[0])
        raise DataError(f"{where}: label {int(labels[i])} at index {i} is out of range; "
                        f"expected 0..{limit - 1} ({what}); {bad.size} labels out of range")


def to_pixels(raw: np.ndarray, where: str) -> np.ndarray:
    """uint8 pixels from any numeric array whose values are whole numbers in 0..255."""
    raw = np.asarray(raw)
    if raw.dtype == np.uint8:
        return raw
    if raw.dtype.kind not in "iuf" and raw.dtype != np.bool_:
        raise DataError(f"{where}: pixels have dtype {raw.dtype}; expected uint8 values 0..255")
    if raw.size == 0:
        return raw.astype(np.uint8)
    lo, hi = raw.min(), raw.max()
    if raw.dtype.kind == "f":
        if not np.isfinite(raw).all():
            raise DataError(f"{where}: pixels contain NaN or infinity; expected 0..255")
        if hi <= 1.0 and (raw != np.round(raw)).any():
            raise DataError(f"{where}: pixels are floats in {float(lo):g}..{float(hi):g}; expected "
                            "whole values 0..255 (multiply by 255 and cast to uint8 before saving)")
        if (raw != np.round(raw)).any():
            raise DataError(f"{where}: pixels are not whole numbers; expected values 0..255")
    if lo < 0 or hi > 255:
        raise DataError(f"{where}: pixel values span {lo}..{hi}; expected 0..255")
    return raw.astype(np.uint8)


def to_nhwc(pixels: np.ndarray, where: str) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) with C 1 or 3 -> contiguous (N, H, W, C)."""
    if pixels.ndim == 3:
        pixels = pixels[..., np.newaxis]
    if pixels.ndim != 4 or pixels.shape[-1] not in (1, 3):
        raise DataError(f"{where}: images have shape {pixels.shape}; expected (N, H, W) grayscale "
                        "or (N, H, W, C) with C 1 (grayscale) or 3 (RGB)")
    if pixels.shape[1] < 1 or pixels.shape[2] < 1:
        raise DataError(f"{where}: images have shape {pixels.shape}; height and width must be >= 1")
    return np.ascontiguousarray(pixels)


def read_classes_file(root: Path) -> tuple[list[str], Path] | None:
    """Class names a channel carries beside its data, and the file they came from: classes.json or
    labels.json (a JSON list of strings, as a model_dir's labels.json) or classes.txt (one per line)."""
    path = next((root / name for name in CLASS_FILES if (root / name).is_file()), None)
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
        names = ([line.strip() for line in text.splitlines() if line.strip()] if path.suffix == ".txt"
                 else json.loads(text))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read class names: {exc}") from exc
    if (not isinstance(names, list) or not names
            or not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names)):
        expected = "one class name per line" if path.suffix == ".txt" else \
            'a JSON list of distinct non-empty class names, e.g. ["cat", "dog"]'
        raise DataError(f"{path}: expected {expected}; got {str(names)[:80]}")
    return names, path


def is_fashion_mnist_labels(labels: np.ndarray) -> bool:
    expected = FASHION_MNIST_LABEL_SHA256.get(len(labels))
    if expected is None or labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        return False
    return hashlib.sha256(labels.astype(np.uint8).tobytes()).hexdigest() == expected


def name_classes(labels: np.ndarray, image_shape: tuple[int, ...], root: Path,
                 files: Sequence[Path], where: str) -> list[str]:
    """Class names for a format that stores only class ids, and the range check that goes with them.

    A class names file in the channel (CLASS_FILES) wins; 28x28x1 data whose channel folder or file
    names mention "fashion", or whose labels are exactly Fashion-MNIST's, gets Fashion-MNIST's names
    (MNIST digits use the same file names, so the names alone decide nothing); anything else is
    named "0".."K-1" after its largest label. The log says which rule named them.
    """
    check_label_range(labels, MAX_RAW_LABEL + 1, where, "class ids of a single byte")
    found = read_classes_file(root)
    if found is not None:
        named, path = found
        check_label_range(labels, len(named), where, f"{len(named)} classes in {path}")
        log.info("class names of %s from %s", root, path)
        return named
    if tuple(image_shape) == (28, 28, 1):
        text = " ".join([root.name] + [f.name for f in files]).lower()
        if "fashion" in text:
            check_label_range(labels, 10, where,
                              "Fashion-MNIST's ten classes, chosen because the names mention 'fashion'; "
                              f"put a {CLASSES_FILE} in the channel to name other classes")
            log.info("class names of %s: Fashion-MNIST's (the folder or file names mention 'fashion')", root)
            return list(FASHION_MNIST_CLASSES)
        if is_fashion_mnist_labels(labels):
            log.info("class names of %s: Fashion-MNIST's (its labels are the published Fashion-MNIST set's)", root)
            return list(FASHION_MNIST_CLASSES)
    log.info("class names of %s: \"0\"..\"%d\" (no %s in the channel and not recognised as Fashion-MNIST; "
             "the class_names hyperparameter names them)", root, int(labels.max(initial=0)), " or ".join(CLASS_FILES))
    return digit_names(int(labels.max(initial=-1)) + 1)


def check_same_shape(images: list, pixels: np.ndarray, where: str, first_file) -> None:
    """Refuse a file whose images differ in shape from those already read from `first_file`."""
    if images and pixels.shape[1:] != images[0].shape[1:]:
        raise DataError(f"{where}: images are {pixels.shape[1:]}, those in {Path(first_file).name} are "
                        f"{images[0].shape[1:]}; all images must have one shape")
