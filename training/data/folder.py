"""Image folder trees: <root>/<class name>/*.png|*.jpg|*.jpeg, class names = sorted folder names.
<root>/train/<class>/... and <root>/test/<class>/... hold the two splits in one channel."""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .base import DataError

log = logging.getLogger(__name__)

NAME = "image folders"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
SPLIT_DIRS = {"train": ("train", "training"), "test": ("test", "testing")}


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _is_class_tree(folder: Path) -> bool:
    """Class subfolders that hold images directly (not further class trees)."""
    dirs = _visible_dirs(folder)
    return bool(dirs) and any(
        any(p.suffix.lower() in IMAGE_SUFFIXES for p in d.iterdir() if p.is_file()) for d in dirs)


def find_roots(root: Path) -> dict[str, Path]:
    """Class-tree folder by split; empty when root is not an image folder tree."""
    if not root.is_dir():
        return {}
    by_name = {d.name.lower(): d for d in _visible_dirs(root)}
    splits = {}
    for split, names in SPLIT_DIRS.items():
        for name in names:
            if name in by_name and _is_class_tree(by_name[name]):
                splits[split] = by_name[name]
                break
    if splits:
        return splits
    return {"train": root} if _is_class_tree(root) else {}


def to_8bit(img: Image.Image) -> Image.Image:
    """A 16-bit grayscale image (PNG/TIFF mode I;16*) scaled to 0..255: Pillow's convert("L")
    would clip every value above 255 to white. The serving preprocessing does the same."""
    if not img.mode.startswith("I;16"):
        return img
    return Image.fromarray(np.rint(np.asarray(img, dtype=np.float64) / 257.0).astype(np.uint8), "L")


# At most this many unreadable files are named one by one in the error; the rest are counted.
MAX_NAMED_FILES = 100


def _mode_of(img: Image.Image) -> str:
    return "L" if img.mode in GRAY_MODES else "RGB"


def _scan(path: Path) -> tuple[tuple[int, int], str]:
    """(width, height) and "L" or "RGB" from the file's header, without decoding its pixels."""
    with Image.open(path) as img:
        return img.size, _mode_of(img)


def _load(path: Path, size: tuple[int, int], mode: str) -> tuple[np.ndarray, bool, bool]:
    """The image as `mode` pixels of `size`, and whether it was resized and whether its channels converted."""
    with Image.open(path) as img:
        img.load()
        img = to_8bit(img)
        natural = _mode_of(img)
        img = img.convert(natural) if img.mode != natural else img
        converted = natural != mode
        img = img.convert(mode) if converted else img
        resized = img.size != size
        if resized:
            img = img.resize(size, Image.BILINEAR)  # as the serving preprocessing resizes
        return np.asarray(img, dtype=np.uint8), resized, converted


def _reason(exc: Exception) -> str:
    if isinstance(exc, UnidentifiedImageError):
        return "not a readable PNG/JPEG image (content not recognised)"
    return f"not a readable PNG/JPEG image ({exc})"


def _bad_files_error(tree: Path, bad: list[tuple[Path, str]], total: int) -> DataError:
    named = "; ".join(f"{path}: {reason}" for path, reason in bad[:MAX_NAMED_FILES])
    more = f"; and {len(bad) - MAX_NAMED_FILES} more" if len(bad) > MAX_NAMED_FILES else ""
    return DataError(f"{tree}: {len(bad)} of {total} files cannot be used (remove or replace them): {named}{more}")


def _choose(found: dict[Path, tuple[tuple[int, int], str]], size: tuple[int, int] | None,
            mode: str | None) -> tuple[tuple[int, int], str]:
    """The one size (width, height) and colour mode every image is given: those asked for, else the most
    common size in the data, and RGB unless most images are grayscale."""
    if size is None:
        size = Counter(s for s, _ in found.values()).most_common(1)[0][0]
    if mode is None:
        modes = Counter(m for _, m in found.values())
        mode = "L" if modes["L"] > modes["RGB"] else "RGB"
    return size, mode


def _files_by_class(tree: Path, classes: list[str], bad: list) -> list[tuple[Path, int]]:
    files = []
    for index, name in enumerate(classes):
        found = _image_files(tree / name)
        if not found:
            bad.append((tree / name, "class folder holds no PNG/JPEG files"))
        files += [(path, index) for path in found]
    return files


def read_tree(tree: Path, size: tuple[int, int] | None = None, mode: str | None = None
              ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images (N, H, W, C) uint8, labels, class names) of one class tree.

    Images of other sizes or colour modes are resized (bilinear, as serving does) to `size` (width,
    height; default the most common size) and converted to `mode` ("L" or "RGB"; default RGB unless
    most images are grayscale); the log says how many. Every unreadable file is named in one error.
    """
    classes = [d.name for d in _visible_dirs(tree)]
    bad: list[tuple[Path, str]] = []
    files = _files_by_class(tree, classes, bad)
    found = {}
    for path, _ in files:
        try:
            found[path] = _scan(path)
        except (OSError, ValueError, SyntaxError) as exc:
            bad.append((path, _reason(exc)))
    if not found and not bad:
        raise DataError(f"{tree}: no PNG/JPEG images in its class folders")
    size, mode = _choose(found, size, mode) if found else (None, None)
    arrays, labels, resized, converted = [], [], 0, 0
    for path, label in files:
        if path not in found:
            continue
        try:
            pixels, was_resized, was_converted = _load(path, size, mode)
        except (OSError, ValueError, SyntaxError) as exc:
            bad.append((path, _reason(exc)))
            continue
        arrays.append(pixels)
        labels.append(label)
        resized += was_resized
        converted += was_converted
    if bad:
        raise _bad_files_error(tree, bad, len(files))
    _log_changes(tree, len(arrays), size, mode, resized, converted)
    images = np.stack(arrays)
    if images.ndim == 3:
        images = images[..., np.newaxis]
    log.debug("%s: %d images in %d class folders", tree, len(images), len(classes))
    return images, np.asarray(labels, dtype=np.int64), classes


def _log_changes(tree: Path, total: int, size: tuple[int, int], mode: str, resized: int, converted: int) -> None:
    if resized:
        log.info("%s: resized %d of %d images to %dx%d (height x width; the image_size hyperparameter sets it, "
                 "default the most common size)", tree, resized, total, size[1], size[0])
    if converted:
        what = "grayscale" if mode == "L" else "colour (RGB)"
        log.info("%s: converted %d of %d images to %s, the mode of most images", tree, converted, total, what)


def peek_shape(tree: Path, size: tuple[int, int] | None = None) -> tuple[int, int, int] | None:
    """(height, width, channels) read_tree would give, from the files' headers alone."""
    found = {}
    for path, _ in _files_by_class(tree, [d.name for d in _visible_dirs(tree)], []):
        try:
            found[path] = _scan(path)
        except (OSError, ValueError, SyntaxError):
            continue
    if not found:
        return None
    (width, height), mode = _choose(found, size, None)
    return height, width, 1 if mode == "L" else 3
