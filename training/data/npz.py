"""Keras-style .npz archives: x_train, y_train, x_test, y_test; or x, y (split named by the file)."""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from .base import DataError, check_same_shape, to_labels, to_nhwc, to_pixels

NAME = "npz"
LAYOUTS = "x_train, y_train (and x_test, y_test) or x, y"


def _is_test_name(path: Path) -> bool:
    return "test" in path.name.lower()


def _open(path: Path):
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz archive ({exc})") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: holds a single .npy array, not an .npz archive with {LAYOUTS}")
    return archive


def find_entries(root: Path, files: Sequence[Path]) -> dict[str, list[tuple[Path, str, str]]]:
    """(file, images key, labels key) by split."""
    entries: dict[str, list[tuple[Path, str, str]]] = {}
    for path in sorted(files, key=lambda p: p.name):
        if path.suffix.lower() != ".npz":
            continue
        with _open(path) as archive:
            keys = set(archive.files)
        found = False
        for split, x_key, y_key in (("train", "x_train", "y_train"), ("test", "x_test", "y_test"),
                                    ("test" if _is_test_name(path) else "train", "x", "y")):
            if x_key in keys or y_key in keys:
                if not (x_key in keys and y_key in keys):
                    have, lack = (x_key, y_key) if x_key in keys else (y_key, x_key)
                    raise DataError(f"{path}: has '{have}' but no '{lack}'")
                entries.setdefault(split, []).append((path, x_key, y_key))
                found = True
        if not found:
            raise DataError(f"{path}: arrays {sorted(keys)}; expected {LAYOUTS}")
    return entries


def _array(archive, path: Path, key: str) -> np.ndarray:
    try:
        return archive[key]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: cannot read array '{key}' ({exc})") from exc


def read_entries(entries: Sequence[tuple[Path, str, str]]) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    images, labels, files = [], [], []
    for path, x_key, y_key in entries:
        with _open(path) as archive:
            x, y = _array(archive, path, x_key), _array(archive, path, y_key)
        where = f"{path} ['{x_key}']"
        pixels = to_nhwc(to_pixels(x, where), where)
        ids = to_labels(y, f"{path} ['{y_key}']")
        if len(ids) != len(pixels):
            raise DataError(f"{path}: '{x_key}' holds {len(pixels)} images but '{y_key}' "
                            f"{len(ids)} labels; expected one label per image")
        check_same_shape(images, pixels, where, files[0] if files else path)
        images.append(pixels)
        labels.append(ids)
        files.append(path)
    if len(images) == 1:
        return images[0], labels[0], files
    return np.concatenate(images), np.concatenate(labels), files
