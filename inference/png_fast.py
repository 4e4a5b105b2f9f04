"""A short path for the common PNG: 8-bit grayscale or RGB, not interlaced, already at the model's
size and colour mode. The chunks are read here (with their CRCs checked) and the pixel data goes
straight to Pillow's PNG ("zip") decoder, skipping Pillow's Python-level file opening. Anything
else, and any PNG this path finds wrong, returns None: the caller then decodes through
Image.open, which gives the same pixels and the usual error messages.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np
from PIL import Image

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour type -> (Pillow mode, channels), for bit depth 8.
COLOUR_TYPES = {0: ("L", 1), 2: ("RGB", 3)}


def _pixel_data(body: bytes) -> tuple[tuple, bytes] | None:
    """(IHDR fields, joined IDAT data) of a well-formed PNG, else None."""
    if not body.startswith(SIGNATURE):
        return None
    position, end_of_body, header, chunks = 8, len(body), None, []
    while position + 12 <= end_of_body:
        length, kind = struct.unpack_from(">I4s", body, position)
        data_end = position + 8 + length
        if data_end + 4 > end_of_body:
            return None
        if zlib.crc32(body[position + 4:data_end]) != int.from_bytes(body[data_end:data_end + 4], "big"):
            return None
        if kind == b"IHDR" and length == 13:
            header = struct.unpack_from(">IIBBBBB", body, position + 8)
        elif kind == b"IDAT":
            chunks.append(body[position + 8:data_end])
        elif kind == b"IEND":
            return (header, b"".join(chunks)) if header and chunks else None
        position = data_end + 4
    return None


def decode(body: bytes, height: int, width: int, color_mode: str, rescale: float) -> np.ndarray | None:
    """float32 [1, H, W, C] scaled by `rescale`, or None when this path does not apply."""
    found = _pixel_data(body)
    if found is None:
        return None
    (png_width, png_height, depth, colour, compression, filtering, interlace), data = found
    mode, channels = COLOUR_TYPES.get(colour, (None, 0))
    if (depth != 8 or mode != color_mode or compression or filtering or interlace
            or (png_width, png_height) != (width, height)):
        return None
    try:
        image = Image.frombytes(mode, (width, height), data, "zip", mode)
    except (ValueError, OSError, zlib.error):
        return None
    pixels = np.frombuffer(image.tobytes(), np.uint8).reshape(1, height, width, channels)
    return pixels.astype(np.float32) * np.float32(rescale)
