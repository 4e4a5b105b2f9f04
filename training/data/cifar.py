"""CIFAR-10 "python version" batches: data_batch_1..5, test_batch, batches.meta.

Each batch is a pickled dict {b'data': uint8 array (N, 3072) of row-major R, G, B planes,
b'labels': [int], ...}; batches.meta holds b'label_names'. They are read with an unpickler that
admits only what those files contain: dicts, lists, bytes/str, numbers and numpy arrays. Any
other global a pickle names (os.system, builtins.eval, ...) is refused before it is looked up,
so an arbitrary pickle is never executed.
"""
from __future__ import annotations

import io
import pickle
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from .base import DataError, check_label_range, digit_names

NAME = "CIFAR-10 batches"
TRAIN_BATCH = re.compile(r"^data_batch_\d+$")
TEST_BATCH = "test_batch"
META = "batches.meta"
SIDE = 32


def _reconstruct():
    from numpy._core import multiarray  # numpy >= 2
    return multiarray._reconstruct


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),  # how the published files (numpy 1.x) name it
    ("numpy._core.multiarray", "_reconstruct"),  # the same function as numpy 2 names it
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class RefusedPickle(pickle.UnpicklingError):
    """The pickle names a global outside what CIFAR batches contain."""


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise RefusedPickle(f"refused global {module}.{name}")
        if name == "_reconstruct":
            return _reconstruct()
        return getattr(np, name)

    def persistent_load(self, pid):
        raise RefusedPickle("refused persistent id")


def load_pickle(path: Path) -> dict:
    """The dict a CIFAR batch file holds, keys as str."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc}") from exc
    try:
        obj = _BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
    except RefusedPickle as exc:
        raise DataError(f"{path}: not a CIFAR-10 batch: {exc}; these files may contain only "
                        "dicts, lists, bytes, numbers and numpy arrays") from exc
    except Exception as exc:  # a malformed stream fails in many ways (EOFError, KeyError, TypeError...)
        raise DataError(f"{path}: not a readable CIFAR-10 pickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise DataError(f"{path}: holds a {type(obj).__name__}; expected a dict with b'data' and b'labels'")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def find_batches(root: Path, files: Sequence[Path]) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for path in sorted(files, key=lambda p: (len(p.name), p.name)):
        if TRAIN_BATCH.match(path.name):
            found.setdefault("train", []).append(path)
        elif path.name == TEST_BATCH:
            found.setdefault("test", []).append(path)
    return found


def read_meta(root: Path) -> list[str] | None:
    path = root / META
    if not path.is_file():
        return None
    names = load_pickle(path).get("label_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, (bytes, str)) for n in names):
        raise DataError(f"{path}: expected b'label_names', a list of class names")
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names]


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = load_pickle(path)
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * SIDE * SIDE:
        shown = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: b'data' is {shown}; expected a uint8 array (N, 3072)")
    if not isinstance(labels, (list, np.ndarray)) or len(labels) != len(data):
        count = len(labels) if isinstance(labels, (list, np.ndarray)) else type(labels).__name__
        raise DataError(f"{path}: b'labels' has {count} entries for {len(data)} images; "
                        "expected a list with one label per image")
    try:
        ids = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: b'labels' are not integers ({exc})") from exc
    images = data.reshape(len(data), 3, SIDE, SIDE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), ids


def read_batches(root: Path, paths: Sequence[Path]) -> tuple[np.ndarray, np.ndarray, list[str], list[Path]]:
    classes = read_meta(root)
    limit = len(classes) if classes is not None else 10
    images, labels = [], []
    for path in paths:
        batch_images, ids = read_batch(path)
        check_label_range(ids, limit, str(path),
                          f"{limit} classes in {META}" if classes is not None else "CIFAR-10's ten classes")
        images.append(batch_images)
        labels.append(ids)
    sources = list(paths) + ([root / META] if classes is not None else [])
    return np.concatenate(images), np.concatenate(labels), classes or digit_names(10), sources
