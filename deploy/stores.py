"""Where batch transform reads inputs and writes `<key>.out`: an S3 prefix or a local folder.

Both name outputs exactly as SageMaker batch transform does: the input `<in prefix>/a/b.png`
gives `<out prefix>/a/b.png.out`. Writes are whole-body: S3 put_object is atomic, and a local
file is written beside its final name and renamed into place, so an interrupted run never leaves
a partial object under a final name.
"""
from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol

from convlab import s3io
from convlab.atomic import write_bytes_atomic
from deploy.aws import S3Uri, client, is_s3, list_objects
from deploy.errors import TransformError

log = logging.getLogger(__name__)

OUT_SUFFIX = ".out"
PARTIAL_MARK = ".partial-"
# What LocalStore.write leaves when interrupted: `<key>.out.partial-<process>-<thread>`. Only
# these are partial outputs; an input may have `.partial-` anywhere in its name.
PARTIAL_OUTPUT = re.compile(re.escape(OUT_SUFFIX + PARTIAL_MARK) + r"\d+-\d+$")


@dataclass(frozen=True)
class Item:
    """One input object: `relative` is its key below the input prefix; `tag` changes whenever its
    bytes may have (an S3 ETag, a local file's size and nanosecond mtime)."""

    relative: str
    size: int
    modified: float
    tag: str = ""


class Store(Protocol):
    def __str__(self) -> str: ...
    def items(self) -> Iterator[Item]: ...
    def read(self, relative: str) -> bytes: ...
    def write(self, relative: str, body: bytes, content_type: str) -> None: ...
    def delete(self, relative: str) -> None: ...
    def location(self, relative: str) -> str: ...


class S3Store:
    """Objects under s3://bucket/prefix (listing paginated)."""

    chunk = 1  # objects per read or write job of a transform: each request waits on the network

    def __init__(self, uri: S3Uri, s3: Any | None = None, pool: int = 32) -> None:
        self.uri = uri
        self.s3 = s3 or client("s3", max_pool=pool)

    def __str__(self) -> str:
        return str(self.uri)

    def key(self, relative: str) -> str:
        if not self.uri.key:
            return relative
        return self.uri.key + ("" if self.uri.key.endswith("/") else "/") + relative

    def items(self) -> Iterator[Item]:
        for obj in list_objects(self.s3, self.uri):
            key = obj["Key"]
            if key.endswith("/"):
                continue
            relative = key[len(self.uri.key):].lstrip("/")
            yield Item(relative, int(obj["Size"]), obj["LastModified"].timestamp(), obj.get("ETag", "").strip('"'))

    def read(self, relative: str) -> bytes:
        return self.s3.get_object(Bucket=self.uri.bucket, Key=self.key(relative))["Body"].read()

    def write(self, relative: str, body: bytes, content_type: str) -> None:
        self.s3.put_object(Bucket=self.uri.bucket, Key=self.key(relative), Body=body,
                           ContentType=content_type)

    def delete(self, relative: str) -> None:
        self.s3.delete_object(Bucket=self.uri.bucket, Key=self.key(relative))

    def location(self, relative: str) -> str:
        return f"s3://{self.uri.bucket}/{self.key(relative)}"


class LocalStore:
    """Files under a local folder (recursively), listed in path order."""

    chunk = 16  # files per read or write job of a transform: a file takes less than a thread hand-off

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._root = str(self.root)
        self._folders: set[str] = set()  # output folders known to exist

    def __str__(self) -> str:
        return self._root

    def items(self) -> Iterator[Item]:
        if not self.root.is_dir():
            raise TransformError(f"input folder {self._root!r} does not exist")
        yield from _walk(self._root, "", set())

    def _path(self, relative: str) -> str:
        """root/relative, refusing a key (an S3 key holding `..`, say) that points outside root."""
        normal = os.path.normpath(relative)
        if os.path.isabs(normal) or normal == ".." or normal.startswith(".." + os.sep):
            raise TransformError(f"key {relative!r} points outside the folder {str(self.root)!r}; "
                                 "expected a path below it")
        return os.path.join(self._root, normal)

    def read(self, relative: str) -> bytes:
        with open(self._path(relative), "rb") as stream:
            return stream.read()

    def write(self, relative: str, body: bytes, content_type: str) -> None:
        """Write beside the final name (`<name>.partial-<process>-<thread>`), then rename into place."""
        final = self._path(relative)
        folder = os.path.dirname(final)
        if folder not in self._folders:
            os.makedirs(folder, exist_ok=True)
            self._folders.add(folder)
        write_bytes_atomic(final, body, f"{final}{PARTIAL_MARK}{os.getpid()}-{threading.get_ident()}")

    def delete(self, relative: str) -> None:
        try:
            os.unlink(self._path(relative))
        except FileNotFoundError:
            pass

    def location(self, relative: str) -> str:
        return os.path.join(self._root, relative) if relative else self._root

    def remove_partials(self) -> int:
        stale = [p for p in self.root.rglob(f"*{OUT_SUFFIX}{PARTIAL_MARK}*")
                 if p.is_file() and PARTIAL_OUTPUT.search(p.name)] if self.root.is_dir() else []
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)


def _walk(root: str, prefix: str, seen: set) -> Iterator[Item]:
    """The files below root/prefix in path order (a folder's entries sorted by name, each folder's
    files where its name sorts), partial outputs (`<key>.out.partial-<n>-<n>`) left out; a folder linked twice is walked once."""
    folder = os.path.join(root, prefix) if prefix else root
    real = os.path.realpath(folder)
    if real in seen:
        return
    seen.add(real)
    with os.scandir(folder) as entries:
        ordered = sorted(entries, key=lambda entry: entry.name)
    for entry in ordered:
        relative = prefix + entry.name
        if entry.is_dir():
            yield from _walk(root, relative + "/", seen)
        elif entry.is_file() and not PARTIAL_OUTPUT.search(entry.name):
            stat = entry.stat()
            yield Item(relative, stat.st_size, stat.st_mtime, f"{stat.st_size}-{stat.st_mtime_ns}")


def open_store(location: str | Path, s3: Any | None = None, pool: int = 32) -> S3Store | LocalStore:
    text = str(location)
    if is_s3(text):
        return S3Store(S3Uri.parse(text, "transform location"), s3, pool)
    return LocalStore(text)


def upload_folder(source: LocalStore, dest: S3Store, workers: int = 8) -> int:
    """Copy every file under a local folder to an S3 prefix, keeping relative keys (an object
    already holding the same bytes is not sent again)."""
    files = [(source.root / item.relative, dest.key(item.relative)) for item in source.items()]
    plans = s3io.plan_uploads(dest.s3, dest.uri.bucket, files, workers)
    s3io.upload_files(dest.s3, dest.uri.bucket, plans, workers,
                      extra_args={"ContentType": "application/octet-stream"})
    return len(files)


def completed_outputs(out: S3Store | LocalStore) -> dict[str, float]:
    """relative input key -> modified time, for every complete `.out` under the output store."""
    if isinstance(out, LocalStore):
        removed = out.remove_partials()
        if removed:
            log.info("removed %d partial outputs left by an interrupted run", removed)
        if not out.root.exists():
            return {}
    done: dict[str, float] = {}
    for item in out.items():
        if item.relative.endswith(OUT_SUFFIX) and item.size > 0:
            done[item.relative[:-len(OUT_SUFFIX)]] = item.modified
    return done
