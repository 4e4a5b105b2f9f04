"""S3 transfers for every part of convlab: paginated listings, and downloads and uploads of many
objects at once on a thread pool (one boto3 client, which is thread-safe).

    list_objects(s3, bucket, prefix)            every object under a prefix, page after page
    list_folder(s3, bucket, prefix)             the same for a folder: `train` is `train/`, not `train-old/`
    download_prefix(s3, uri, dest)              every object under s3://bucket/prefix into dest/
    upload_files(s3, bucket, [(path, key)])     many files; an unchanged object is not sent again

An object counts as unchanged when its MD5 matches the file's: the listing's ETag for a single-part
upload, else the `convlab-md5` metadata convlab stores on every upload (a multipart ETag is not
an MD5). Only boto3 and the standard library are used: deploy, the command line and the parts of
training that run where convlab is installed (training/local.py, training/experiments/) share it.
"""
from __future__ import annotations

import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

log = logging.getLogger(__name__)

MD5_METADATA = "convlab-md5"
WORKERS = 8


class TransferError(ValueError):
    """An object that could not be sent or fetched; the message names the file and the S3 URI."""


def split_uri(uri: str) -> tuple[str, str]:
    """("bucket", "key/prefix") of s3://bucket/key/prefix."""
    if not str(uri).startswith("s3://"):
        raise ValueError(f"{uri!r} is not an S3 URI: expected s3://bucket/prefix")
    bucket, _, key = str(uri)[len("s3://"):].partition("/")
    return bucket, key


def list_objects(s3: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    """Every object under the prefix (all pages): dicts with Key, Size, LastModified, ETag."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def list_folder(s3: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    """Every object in the folder `prefix` names: the keys under `prefix/` (a prefix `train`
    never matches `train-old/`), or the one object whose key is `prefix` itself."""
    if not prefix or prefix.endswith("/"):
        yield from list_objects(s3, bucket, prefix)
        return
    first = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1).get("Contents", [])
    if first and first[0]["Key"] == prefix:  # the shortest key with this prefix sorts first
        yield first[0]
    yield from list_objects(s3, bucket, prefix + "/")


def has_objects(s3: Any, bucket: str, prefix: str) -> bool:
    return bool(s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1).get("KeyCount", 0))


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _pool_map(function: Callable[[Any], Any], items: Sequence[Any], workers: int) -> list[Any]:
    if len(items) <= 1 or workers <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(function, items))


def download(s3: Any, bucket: str, key: str, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    s3.download_file(bucket, key, str(target))
    return target


def download_prefix(s3: Any, uri: str, dest: Path, workers: int = WORKERS) -> list[Path]:
    """Copy every object under s3://bucket/prefix into dest, keeping the keys below the prefix.

    A key that would land outside dest (one holding `..`) is a ValueError naming it; nothing is
    downloaded then."""
    bucket, prefix = split_uri(uri)
    dest = Path(dest)
    plan = []
    for item in list_folder(s3, bucket, prefix):
        key = item["Key"]
        if key.endswith("/"):
            continue
        target = dest / (key[len(prefix):].lstrip("/") or Path(key).name)
        if not target.resolve().is_relative_to(dest.resolve()):
            raise ValueError(f"{uri}: object key {key!r} would be written outside {dest}")
        plan.append((key, target))
    return _pool_map(lambda pair: download(s3, bucket, pair[0], pair[1]), plan, workers)


def _stored_md5s(s3: Any, bucket: str, keys: set[str]) -> dict[str, str]:
    """key -> the ETag of each key that exists (one listing under the keys' common prefix). A bucket
    that does not exist yet, or cannot be listed, holds none of them as far as an upload can tell."""
    from botocore.exceptions import ClientError

    if not keys:
        return {}
    prefix = _common_prefix(keys)
    try:
        return {obj["Key"]: obj.get("ETag", "").strip('"') for obj in list_objects(s3, bucket, prefix)
                if obj["Key"] in keys}
    except ClientError as exc:
        log.debug("s3://%s/%s cannot be listed (%s): every file counts as new", bucket, prefix, exc)
        return {}


def _common_prefix(keys: set[str]) -> str:
    first, last = min(keys), max(keys)
    size = 0
    while size < min(len(first), len(last)) and first[size] == last[size]:
        size += 1
    return first[:size]


def is_unchanged(s3: Any, bucket: str, key: str, md5: str, etag: str | None) -> bool:
    """True when the object at key holds the file whose MD5 is `md5` (etag: from a listing)."""
    from botocore.exceptions import ClientError

    if etag is None:
        return False
    if "-" not in etag:
        return etag == md5
    try:
        return s3.head_object(Bucket=bucket, Key=key).get("Metadata", {}).get(MD5_METADATA) == md5
    except ClientError:
        return False


@dataclass
class UploadPlan:
    """One file to upload: where it goes, its MD5, size, and whether S3 already holds it."""

    path: Path
    key: str
    md5: str
    size: int
    present: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def plan_uploads(s3: Any, bucket: str, files: Sequence[tuple[Path, str]],
                 workers: int = WORKERS) -> list[UploadPlan]:
    """Each (file, key) with its MD5 and whether an identical object is already there (S3 is read only)."""
    stored = _stored_md5s(s3, bucket, {key for _, key in files})
    plans = [UploadPlan(Path(path), key, file_md5(Path(path)), Path(path).stat().st_size) for path, key in files]

    def check(plan: UploadPlan) -> None:
        plan.present = is_unchanged(s3, bucket, plan.key, plan.md5, stored.get(plan.key))

    _pool_map(check, plans, workers)
    return plans


def upload_files(s3: Any, bucket: str, plans: Sequence[UploadPlan], workers: int = WORKERS,
                 callback: Callable[[int], Any] | None = None,
                 extra_args: dict[str, Any] | None = None) -> list[UploadPlan]:
    """Upload every planned file not already present (MD5 stored as metadata); return those sent.
    `callback(bytes)` is told of progress, skipped files included."""
    sent = [plan for plan in plans if not plan.present]
    if callback is not None:
        callback(sum(plan.size for plan in plans if plan.present))

    def send(plan: UploadPlan) -> None:
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import ClientError

        args = {**(extra_args or {}), "Metadata": {MD5_METADATA: plan.md5}}
        try:
            s3.upload_file(str(plan.path), bucket, plan.key, ExtraArgs=args, Callback=callback)
        except (ClientError, S3UploadFailedError) as exc:
            raise TransferError(f"cannot upload {plan.path} to s3://{bucket}/{plan.key}: {exc}") from None

    _pool_map(send, sent, workers)
    return sent
