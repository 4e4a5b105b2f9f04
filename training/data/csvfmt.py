"""CSV with a label column and one column per pixel (Kaggle's fashion-mnist_train.csv layout:
`label,pixel1..pixel784`). The header is optional; without one the label is the first column.
Images are square and grayscale: side = sqrt(number of pixel columns). A file whose name
contains "test" is the test split."""
from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

from .base import DataError, check_same_shape

NAME = "CSV"
_ROWS_PER_CHUNK = 4096


def is_csv(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".csv") or name.endswith(".csv.gz")


def find_files(root: Path, files: Sequence[Path]) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for path in sorted(files, key=lambda p: p.name):
        if is_csv(path):
            found.setdefault("test" if "test" in path.name.lower() else "train", []).append(path)
    return found


def _read_text(path: Path) -> bytes:
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: not a valid gzip file ({exc})") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc}") from exc


def _is_number(field: bytes) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _column_name(header: list[str] | None, column: int) -> str:
    if header and column < len(header):
        return f"column {column + 1} ({header[column]})"
    return f"column {column + 1}"


class _Table:
    """The body of one CSV file: line offsets and the line numbers they had in the file."""

    def __init__(self, path: Path, data: bytes):
        self.path = path
        data = data.replace(b"\r", b"").replace(b'"', b"")
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        first_end = data.find(b"\n")
        first = data[: first_end if first_end >= 0 else len(data)]
        self.header: list[str] | None = None
        self.first_line = 1
        if first.strip() and not _is_number(first.split(b",")[0].strip()):
            self.header = [f.strip().decode("utf-8", "replace") for f in first.split(b",")]
            data = data[first_end + 1:] if first_end >= 0 else b""
            self.first_line = 2
        self.data = data if data.endswith(b"\n") else data + b"\n"
        self.buf = np.frombuffer(self.data, dtype=np.uint8)
        ends = np.flatnonzero(self.buf == ord("\n"))
        starts = np.concatenate(([0], ends[:-1] + 1))
        keep = ends > starts  # blank lines are skipped
        self.line_numbers = np.flatnonzero(keep) + self.first_line
        self.starts, self.ends = starts[keep], ends[keep]

    def columns(self, first_row: int, last_row: int) -> np.ndarray:
        """Number of comma-separated fields on each of rows first_row..last_row-1."""
        base = self.starts[first_row]
        segment = self.buf[base: self.ends[last_row - 1] + 1]
        commas = np.zeros(len(segment) + 1, dtype=np.int32)
        np.cumsum(segment == ord(","), dtype=np.int32, out=commas[1:])
        return commas[self.ends[first_row:last_row] - base] - commas[self.starts[first_row:last_row] - base] + 1

    def line(self, row: int) -> bytes:
        return self.data[self.starts[row]: self.ends[row]]

    def where(self, row: int, column: int) -> str:
        return f"{self.path} line {self.line_numbers[row]}, {_column_name(self.header, column)}"


def _locate_bad_field(table: _Table, first_row: int, last_row: int) -> str:
    for row in range(first_row, last_row):
        for column, field in enumerate(table.line(row).split(b",")):
            if not field.strip():
                return f"{table.where(row, column)}: empty value; expected a number"
            if not _is_number(field.strip()):
                shown = field.strip()[:40].decode("utf-8", "replace")
                return f"{table.where(row, column)}: {shown!r} is not a number"
    lines = f"{table.line_numbers[first_row]}..{table.line_numbers[last_row - 1]}"
    return f"{table.path} lines {lines}: unparsable values"


def _parse_chunk(table: _Table, first_row: int, last_row: int, columns: int) -> np.ndarray:
    chunk = table.data[table.starts[first_row]: table.ends[last_row - 1] + 1].replace(b"\n", b",")
    for dtype in (np.int64, np.float64):
        try:
            values = np.fromstring(chunk, dtype=dtype, sep=",")
        except ValueError:
            continue
        if values.size == (last_row - first_row) * columns:
            return values.reshape(last_row - first_row, columns)
    raise DataError(_locate_bad_field(table, first_row, last_row))


def _check_values(table: _Table, values: np.ndarray, offset: int, label_col: int) -> None:
    pixels = np.delete(values, label_col, axis=1)
    bad = (pixels < 0) | (pixels > 255)
    if values.dtype.kind == "f":
        bad |= pixels != np.round(pixels)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        col = col + (col >= label_col)
        raise DataError(f"{table.where(offset + row, col)}: pixel value {values[row, col]:g} is "
                        "outside 0..255 or not a whole number")
    labels = values[:, label_col]
    bad_labels = np.flatnonzero((labels < 0) | (labels > 255) | (labels != np.round(labels)))
    if bad_labels.size:
        row = bad_labels[0]
        raise DataError(f"{table.where(offset + row, label_col)}: label {labels[row]:g} is not a "
                        "class id 0..255")


def read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, side, side, 1) uint8, labels int64) of one CSV file."""
    table = _Table(path, _read_text(path))
    if len(table.starts) == 0:
        raise DataError(f"{path}: no data rows")
    columns = int(table.columns(0, 1)[0]) if table.header is None else len(table.header)
    label_col = 0
    if table.header:
        lowered = [h.lower() for h in table.header]
        label_col = lowered.index("label") if "label" in lowered else 0
    side = math.isqrt(columns - 1)
    if columns < 2 or side * side != columns - 1:
        raise DataError(f"{path}: {columns} columns = 1 label + {columns - 1} pixels; the pixel count "
                        "must be a square (e.g. 784 = 28x28) for square grayscale images")
    rows = len(table.starts)
    images = np.empty((rows, columns - 1), dtype=np.uint8)
    labels = np.empty(rows, dtype=np.int64)
    for first in range(0, rows, _ROWS_PER_CHUNK):
        last = min(rows, first + _ROWS_PER_CHUNK)
        counts = table.columns(first, last)
        wrong = np.flatnonzero(counts != columns)
        if wrong.size:
            row = first + wrong[0]
            like = "the header" if table.header else f"line {table.line_numbers[0]}"
            raise DataError(f"{path} line {table.line_numbers[row]}: {counts[wrong[0]]} columns; "
                            f"expected {columns} like {like}")
        values = _parse_chunk(table, first, last, columns)
        _check_values(table, values, first, label_col)
        labels[first:last] = values[:, label_col]
        images[first:last] = np.delete(values, label_col, axis=1)
    return images.reshape(rows, side, side, 1), labels


def read_files(paths: Sequence[Path]) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    images, labels = [], []
    for path in paths:
        pixels, ids = read_csv(path)
        check_same_shape(images, pixels, str(path), paths[0])
        images.append(pixels)
        labels.append(ids)
    if len(images) == 1:
        return images[0], labels[0], list(paths)
    return np.concatenate(images), np.concatenate(labels), list(paths)
