"""Image folder trees: <root>/<class name>/*.png|*.jpg|*.jpeg, class names = sorted folder names.
<root>/train/<class>/... and <root>/test/<class>/... hold the two splits in one channel."""
from __future__ import annotations

import logging
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


def _load(path: Path) -> Image.Image:
    try:
        with Image.open(path) as img:
            img.load()
            img = to_8bit(img)
            mode = "L" if img.mode in GRAY_MODES else "RGB"
            return img.convert(mode) if img.mode != mode else img.copy()
    except UnidentifiedImageError as exc:
        raise DataError(f"{path}: not a readable PNG/JPEG image (content not recognised)") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: not a readable PNG/JPEG image ({exc})") from exc


def read_tree(tree: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images (N, H, W, C) uint8, labels, class names) of one class tree."""
    classes = [d.name for d in _visible_dirs(tree)]
    arrays: list[np.ndarray] = []
    labels: list[int] = []
    first: tuple[Path, Image.Image] | None = None
    for index, name in enumerate(classes):
        files = _image_files(tree / name)
        if not files:
            raise DataError(f"{tree / name}: class folder holds no PNG/JPEG files")
        for path in files:
            img = _load(path)
            if first is None:
                first = (path, img)
            elif (img.size, img.mode) != (first[1].size, first[1].mode):
                raise DataError(f"{path}: {img.width}x{img.height} {img.mode} image; expected "
                                f"{first[1].width}x{first[1].height} {first[1].mode} like {first[0]} "
                                "(all images must have one size and colour mode)")
            arrays.append(np.asarray(img, dtype=np.uint8))
            labels.append(index)
    if not arrays:
        raise DataError(f"{tree}: no PNG/JPEG images in its class folders")
    images = np.stack(arrays)
    if images.ndim == 3:
        images = images[..., np.newaxis]
    log.debug("%s: %d images in %d class folders", tree, len(images), len(classes))
    return images, np.asarray(labels, dtype=np.int64), classes
