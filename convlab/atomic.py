"""Write a file so that no reader ever sees half of it: write beside it, then rename into place.

Used by training (run records, IDX files), deploy (batch transform outputs, model.tar.gz) and the
command line. It lives here, in a leaf module that imports only the standard library, because
the layering leaves no other place both may import: serving and deploy never import training
code, and training never imports deploy. The training code a SageMaker job runs never writes
through it (it needs no convlab installed): only the parts that run where convlab is installed
do (training/experiments/, training.data.write_idx).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


def process_umask() -> int:
    """The process umask, read without changing it where /proc tells it (Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb", prefix: str | None = None) -> Iterator[IO]:
    """Open a temporary file beside `path` for writing; on success it replaces `path` at once.

    On any error (or interruption) the temporary file is removed and `path` is left as it was.
    `prefix` names the temporary file (default `.<name>.`), so a reader can tell one from a result.
    The file gets the mode a plain write would (0666 less the umask), not mkstemp's 0600.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=prefix or f".{final.name}.", suffix=".tmp", dir=final.parent)
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(handle, mode, encoding=encoding) as stream:
            os.fchmod(stream.fileno(), 0o666 & ~process_umask())
            yield stream
        os.replace(temporary, final)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str, body: bytes, partial: str) -> None:
    """Write `body` to `partial`, a name beside `path` that only this writer uses, then rename it
    onto `path`; on any error `partial` is removed and `path` is left as it was. The folder must
    exist. One open, write and rename, no search for a free temporary name: for writers of many
    small files (batch transform outputs)."""
    try:
        handle = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(body)
            while view:
                view = view[os.write(handle, view):]
        finally:
            os.close(handle)
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
