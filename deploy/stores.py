"""Where batch transform reads inputs and writes `<key>.out`: an S3 prefix or a local folder.

Both name outputs exactly as SageMaker batch transform does: the input `<in prefix>/a/b.png`
gives `<out prefix>/a/b.png.out`. Writes are whole-body: S3 put_object is atomic, and a local
file is written beside its final name and renamed into place, so an interrupted run never leaves
a partial object under a final name.
"""
from __future__ import annotations

import logging
import os
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


@dataclass(frozen=True)
class Item:
    """One input object: `relative` is its key below the input prefix."""

    relative: str
    size: int
    modified: float


class Store(Protocol):
    def __str__(self) -> str: ...
    def items(self) -> Iterator[Item]: ...
    def read(self, relative: str) -> bytes: ...
    def write(self, relative: str, body: bytes, content_type: str) -> None: ...
    def location(self, relative: str) -> str: ...


class S3Store:
    """Objects under s3://bucket/prefix (listing paginated)."""

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
            yield Item(relative, int(obj["Size"]), obj["LastModified"].timestamp())

    def read(self, relative: str) -> bytes:
        return self.s3.get_object(Bucket=self.uri.bucket, Key=self.key(relative))["Body"].read()

    def write(self, relative: str, body: bytes, content_type: str) -> None:
        self.s3.put_object(Bucket=self.uri.bucket, Key=self.key(relative), Body=body,
                           ContentType=content_type)

    def location(self, relative: str) -> str:
        return f"s3://{self.uri.bucket}/{self.key(relative)}"


class LocalStore:
    """Files under a local folder (recursively)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __str__(self) -> str:
        return str(self.root)

    def items(self) -> Iterator[Item]:
        if not self.root.is_dir():
            raise TransformError(f"input folder {str(self.root)!r} does not exist")
        for path in sorted(self.root.rglob("*")):
            if path.is_file() and PARTIAL_MARK not in path.name:
                stat = path.stat()
                yield Item(path.relative_to(self.root).as_posix(), stat.st_size, stat.st_mtime)

    def _path(self, relative: str) -> Path:
        """root/relative, refusing a key (an S3 key holding `..`, say) that points outside root."""
        normal = os.path.normpath(relative)
        if os.path.isabs(normal) or normal == ".." or normal.startswith(".." + os.sep):
            raise TransformError(f"key {relative!r} points outside the folder {str(self.root)!r}; "
                                 "expected a path below it")
        return self.root / normal

    def read(self, relative: str) -> bytes:
        return self._path(relative).read_bytes()

    def write(self, relative: str, body: bytes, content_type: str) -> None:
        final = self._path(relative)
        write_bytes_atomic(final, body, prefix=final.name + PARTIAL_MARK)

    def location(self, relative: str) -> str:
        return str(self.root / relative)

    def remove_partials(self) -> int:
        stale = [p for p in self.root.rglob(f"*{PARTIAL_MARK}*") if p.is_file()] if self.root.is_dir() else []
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)


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
