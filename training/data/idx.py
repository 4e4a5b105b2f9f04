"""MNIST / Fashion-MNIST IDX files (gzipped or not): train-images-idx3-ubyte.gz + train-labels-idx1-ubyte.gz."""
from __future__ import annotations

import gzip
import json
import logging
import re
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

from .base import CLASSES_FILE, DataError, check_same_shape, to_nhwc, to_pixels

log = logging.getLogger(__name__)

NAME = "IDX"
PATTERN = re.compile(r"^(?P<prefix>.*?)[-._]?(?P<kind>images|labels)[-._]idx(?P<dims>\d)[-._]ubyte"
                     r"(?P<gz>\.gz)?$", re.IGNORECASE)
_TYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
          0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def split_of(prefix: str) -> str:
    """"t10k" and "test" prefixes are the test split, anything else ("train", "") training."""
    lowered = prefix.lower()
    return "test" if ("t10k" in lowered or "test" in lowered) else "train"


def _read_bytes(path: Path) -> bytes:
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except EOFError as exc:
        raise DataError(f"{path}: gzip stream is truncated ({exc})") from exc
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: not a valid gzip file ({exc})") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc}") from exc


def read_idx(path: Path) -> np.ndarray:
    """One IDX file as an array of the shape its header declares."""
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path}: {len(data)} bytes is too short for an IDX header (4 bytes + dimensions)")
    zero, type_code, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or type_code not in _TYPES or ndim == 0:
        raise DataError(f"{path}: not an IDX file (magic {data[:4].hex()}; expected 0000 then a type "
                        f"code 08/09/0b/0c/0d/0e and the number of dimensions)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header: {ndim} dimensions need {header} bytes, "
                        f"file has {len(data)}")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = _TYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    present = len(data) - header
    if present < expected:
        raise DataError(f"{path}: truncated IDX file: header declares shape {shape} "
                        f"({expected} bytes of data), only {present} bytes present")
    if present > expected:
        raise DataError(f"{path}: IDX file has {present - expected} bytes beyond the shape {shape} "
                        "its header declares")
    values = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=header)
    return values.reshape(shape).copy()  # writable, unlike a view of the file's bytes


def find_pairs(root: Path, files: Sequence[Path]) -> dict[str, list[tuple[Path, Path]]]:
    """Image/label file pairs by split. A lone file finds its partner next to it; a file with no
    partner is a DataError naming it. Where both a .gz and an uncompressed copy exist, the
    uncompressed one is read."""
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(files, key=lambda p: p.name):
        match = PATTERN.match(path.name)
        if match:
            kinds = found.setdefault(match["prefix"].lower(), {})
            kind = match["kind"].lower()
            if kind in kinds:
                log.info("%s: ignored, %s holds the same %s", path, kinds[kind].name, kind)
                continue
            kinds[kind] = path
    pairs: dict[str, list[tuple[Path, Path]]] = {}
    for prefix, kinds in sorted(found.items()):
        for missing, present in (("labels", "images"), ("images", "labels")):
            if missing not in kinds:
                partner = _partner(kinds[present])
                if partner is None:
                    raise DataError(f"{kinds[present]}: IDX {present} file without its {missing} file "
                                    f"(expected {_partner_names(kinds[present].name)[0]} next to it)")
                kinds[missing] = partner
        pairs.setdefault(split_of(prefix), []).append((kinds["images"], kinds["labels"]))
    return pairs


def _partner_names(name: str) -> list[str]:
    match = PATTERN.match(name)
    assert match is not None
    head, tail = name[:match.start("kind")], name[match.end("dims"):]
    if match["kind"].lower() == "images":
        stems = [f"{head}labels{name[match.end('kind'):match.start('dims')]}1{tail}"]
    else:
        stems = [f"{head}images{name[match.end('kind'):match.start('dims')]}{d}{tail}" for d in (3, 4)]
    names = []
    for stem in stems:
        names += [stem, stem[:-3] if stem.lower().endswith(".gz") else stem + ".gz"]
    return names


def _partner(path: Path) -> Path | None:
    for name in _partner_names(path.name):
        if (path.parent / name).is_file():
            return path.parent / name
    return None


def read_pairs(pairs: Sequence[tuple[Path, Path]]) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """Images (N, H, W, C) uint8 and raw labels of the given pairs, concatenated."""
    images, labels, files = [], [], []
    for image_path, label_path in pairs:
        pixels = to_nhwc(to_pixels(read_idx(image_path), str(image_path)), str(image_path))
        raw = read_idx(label_path)
        if raw.ndim != 1:
            raise DataError(f"{label_path}: label IDX file has shape {raw.shape}; expected one dimension")
        if len(raw) != len(pixels):
            raise DataError(f"{label_path}: {len(raw)} labels for {len(pixels)} images in "
                            f"{image_path.name}; expected one label per image")
        check_same_shape(images, pixels, str(image_path), files[0] if files else image_path)
        images.append(pixels)
        labels.append(raw.astype(np.int64))
        files += [image_path, label_path]
    if len(images) == 1:
        return images[0], labels[0], files
    return np.concatenate(images), np.concatenate(labels), files


def _write_atomic(path: Path, payload: bytes, compress: bool) -> None:
    # Writing IDX files happens where convlab is installed (tests, the command line); the training
    # package staged as a SageMaker source dir only reads them, so it needs no convlab module.
    from convlab.atomic import atomic_write

    with atomic_write(path) as raw:
        if compress:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0) as gz:
                gz.write(payload)
        else:
            raw.write(payload)


def write_idx(dest_dir, images, labels, prefix: str = "train", gzip: bool = True,
              classes: Sequence[str] | None = None) -> tuple[Path, Path]:
    """Write <prefix>-images-idx3-ubyte(.gz) and <prefix>-labels-idx1-ubyte(.gz) into dest_dir.

    images: uint8 (N, H, W) or (N, H, W, 1); RGB (N, H, W, 3) is written as a 4-dimensional
    images-idx4 file. labels: integers 0..255. With classes, also writes classes.json so the
    channel's readers name the classes. Returns (images path, labels path).
    """
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    pixels = to_pixels(np.asarray(images), "write_idx images")
    if pixels.ndim == 4 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim not in (3, 4) or (pixels.ndim == 4 and pixels.shape[-1] != 3):
        raise DataError(f"write_idx: images of shape {pixels.shape}; expected (N, H, W), "
                        "(N, H, W, 1) or (N, H, W, 3)")
    ids = np.asarray(labels)
    if ids.ndim != 1 or len(ids) != len(pixels):
        raise DataError(f"write_idx: labels of shape {ids.shape} for {len(pixels)} images; "
                        f"expected ({len(pixels)},)")
    if ids.size and (ids.min() < 0 or ids.max() > 255 or ids.dtype.kind not in "iu"):
        raise DataError(f"write_idx: labels must be integers 0..255; "
                        f"got {ids.dtype} {ids.min()}..{ids.max()}")
    suffix = ".gz" if gzip else ""
    image_path = dest / f"{prefix}-images-idx{pixels.ndim}-ubyte{suffix}"
    label_path = dest / f"{prefix}-labels-idx1-ubyte{suffix}"
    for path, array in ((image_path, np.ascontiguousarray(pixels)), (label_path, ids.astype(np.uint8))):
        header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
        _write_atomic(path, header + array.tobytes(), gzip)
    if classes is not None:
        names = [str(c) for c in classes]
        if ids.size and ids.max() >= len(names):
            raise DataError(f"write_idx: label {int(ids.max())} has no name among {len(names)} classes")
        _write_atomic(dest / CLASSES_FILE, json.dumps(names).encode("utf-8"), False)
    log.debug("wrote %d images to %s and %s", len(pixels), image_path, label_path)
    return image_path, label_path


def peek_shape(pairs: Sequence[tuple[Path, Path]]) -> tuple[int, int, int] | None:
    """(height, width, channels) the first images file's header declares, read without its pixels."""
    path = pairs[0][0]
    try:
        with (gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")) as fh:
            head = fh.read(4 + 4 * 4)
    except (OSError, EOFError, zlib.error):
        return None
    if len(head) < 4 or head[3] not in (3, 4) or len(head) < 4 + 4 * head[3]:
        return None
    dims = [int.from_bytes(head[4 + 4 * i: 8 + 4 * i], "big") for i in range(head[3])]
    return (dims[1], dims[2], dims[3] if len(dims) == 4 else 1)
