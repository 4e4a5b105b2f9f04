"""The S3 side of a launch: a local data set -> channel prefixes, and a finished job -> metrics.json.

A data set folder is uploaded file by file as it is (any format the readers accept), so the job's
channels hold exactly what `convlab train --local` would read:

    <folder>/train/..., <folder>/test/...      -> PREFIX/train/..., PREFIX/test/...
    <folder> with files of both splits         -> test-only files (t10k-*, test_batch, ...) to
                                                  PREFIX/test/, every other file to PREFIX/train/
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from convlab.archives import read_json_member
from convlab.launch_checks import (
    ForeignObjects, dataset_prefix, offline_plans, read_as_the_job_will, refuse_foreign_objects, summarise_transfer,
)
from convlab.s3io import TransferError, download, has_objects, plan_uploads, split_uri, upload_files
from training.data import DataError, detect, find_fashion_mnist
from training.data.base import CLASS_FILES

log = logging.getLogger("convlab.launch")

CHANNELS = ("train", "test")
MISSING_CODES = ("404", "NoSuchKey", "NotFound")


class S3DataError(ValueError):
    """A data set or job output in S3 that cannot be used; the message names the URI or folder."""


class MetricsUnavailable(S3DataError):
    """The job's outputs hold no metrics.json."""


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(path).parts))


def _paths_in(entries: Any) -> set[Path]:
    if isinstance(entries, Path):
        return set(_files(entries))
    if isinstance(entries, (list, tuple, set)):
        return set().union(*(_paths_in(e) for e in entries)) if entries else set()
    return set()


def plan_upload(data: str | Path) -> dict[str, list[tuple[Path, str]]]:
    """(file, key under the channel prefix) per channel. A folder with train/ (and test/) keeps that
    split; otherwise files holding only test data (t10k-*, test_batch, ...) go to test/."""
    data = Path(data)
    if (data / "train").is_dir():
        plan = {}
        for channel in CHANNELS:
            if (data / channel).is_dir():
                detect(data / channel)
                plan[channel] = [(p, p.relative_to(data / channel).as_posix()) for p in _files(data / channel)]
        return plan
    layout = detect(data)
    if "train" not in layout.splits:
        raise DataError(f"{data}: holds only {', '.join(sorted(layout.splits))} data; expected training data")
    root = data.parent if data.is_file() else data
    test_only = _paths_in(layout.splits.get("test", [])) - _paths_in(layout.splits["train"])
    plan = {"train": [(p, p.relative_to(root).as_posix()) for p in _files(data) if p not in test_only]}
    if test_only:
        plan["test"] = [(p, p.relative_to(root).as_posix()) for p in sorted(test_only)]
        plan["test"] += [(p, k) for p, k in plan["train"] if k in CLASS_FILES]
    return plan


def _dataset_folder(data: str | Path | None) -> Path:
    if data is None:
        data = find_fashion_mnist()
        if data is None:
            raise S3DataError("Fashion-MNIST is not installed: run scripts/get_fashion_mnist.sh or pass --data DIR")
    return Path(data)


def plan_transfer(s3: Any, data: str | Path | None, bucket: str, prefix: str | None,
                  offline_ok: bool = False) -> dict[str, Any]:
    """What an upload would do, reading S3 only: every file with its key, size, MD5 and whether an
    identical object is already there (then it is skipped). prefix None: the data set's own prefix
    (convlab.launch_checks.dataset_prefix). offline_ok: when S3 cannot be read (no credentials), every
    file counts as to upload and `s3_note` says why."""
    from botocore.exceptions import BotoCoreError, ClientError

    data = _dataset_folder(data)
    plan = plan_upload(data)
    prefix = (prefix or dataset_prefix(data, plan)).strip("/")
    entries = [(channel, path, f"{prefix}/{channel}/{relative}") for channel, pairs in plan.items()
               for path, relative in pairs]
    note = None
    try:
        uploads = plan_uploads(s3, bucket, [(path, key) for _, path, key in entries])
    except (BotoCoreError, ClientError) as exc:
        if not offline_ok:
            raise
        note = f"S3 was not read ({' '.join(str(exc).split())}): every file is counted as to upload"
        uploads = offline_plans([(path, key) for _, path, key in entries])
    files = [{"channel": channel, "path": path, "key": key, "md5": up.md5, "bytes": up.size,
              "present": up.present, "upload": up} for (channel, path, key), up in zip(entries, uploads)]
    return {"data": data, "bucket": bucket, "prefix": prefix, "plan": plan, "files": files, "s3_note": note,
            "channels": {channel: f"s3://{bucket}/{prefix}/{channel}/" for channel in plan}}


def upload_dataset(s3: Any, data: str | Path | None, bucket: str, prefix: str | None = None,
                   progress: bool = True) -> dict[str, str]:
    """Upload a data set's files as they are to s3://bucket/prefix/{train,test}/; return the channels.
    A channel prefix holding objects that are not in the data is refused before anything is sent."""
    from tqdm import tqdm

    transfer = plan_transfer(s3, data, bucket, prefix)
    try:
        refuse_foreign_objects(s3, transfer)
    except ForeignObjects as exc:
        raise S3DataError(str(exc)) from None
    data, files, channels = transfer["data"], transfer["files"], transfer["channels"]
    bar = tqdm(total=sum(f["bytes"] for f in files), unit="B", unit_scale=True, desc=f"upload {data.name}",
               disable=not progress)
    with bar:
        try:
            upload_files(s3, bucket, [f["upload"] for f in files], callback=bar.update)
        except TransferError as exc:
            raise S3DataError(str(exc)) from None
    log.info("data %s -> %s (%d files, %d already there)", data, channels, len(files),
             sum(1 for f in files if f["present"]))
    return channels


def s3_channels(s3: Any, uri: str) -> dict[str, str]:
    """Channels of a data set already in S3: PREFIX/train/ and, when it holds objects, PREFIX/test/."""
    bucket, prefix = split_uri(uri)
    channels = {}
    for channel in CHANNELS:
        key = f"{prefix.strip('/')}/{channel}/".lstrip("/")
        if has_objects(s3, bucket, key):
            channels[channel] = f"s3://{bucket}/{key}"
    if "train" not in channels:
        raise S3DataError(f"--data {uri}: no objects under {uri.rstrip('/')}/train/; expected the training "
                          "data there (and optionally test data under test/)")
    return channels


def fetch_metrics(s3: Any, model_uri: str, dest: Path) -> dict[str, Any]:
    """metrics.json of a finished job: from output/output.tar.gz (small), else from model.tar.gz."""
    from botocore.exceptions import ClientError

    output_uri = model_uri.rsplit("/", 1)[0] + "/output.tar.gz"
    for uri in (output_uri, model_uri):
        if uri.startswith("file://"):
            local = Path(uri[len("file://"):])
            if not local.exists():
                continue
        else:
            bucket, key = split_uri(uri)
            local = dest / Path(key).name
            try:
                download(s3, bucket, key, local)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in MISSING_CODES:
                    continue
                raise S3DataError(f"cannot read {uri}: {exc}") from None
        metrics = read_json_member(local, "metrics.json")
        if metrics is not None:
            log.info("metrics.json from %s", uri)
            return metrics
    raise MetricsUnavailable(f"no metrics.json: neither {output_uri} nor {model_uri} exists or holds one "
                             "(the job wrote no artifacts there)")


def planned_upload(s3: Any, data: str | Path | None, bucket: str, prefix: str | None) -> dict[str, Any]:
    """A dry run's upload: planned (S3 read only, or not at all without credentials), the data read as
    the job will, a foreign channel prefix refused (LaunchError), and the plan summarised."""
    from convlab.sagemaker_setup import LaunchError

    transfer = plan_transfer(s3, data, bucket, prefix, offline_ok=True)
    readers = read_as_the_job_will(transfer["data"])
    if transfer["s3_note"] is None:
        try:
            refuse_foreign_objects(s3, transfer)
        except ForeignObjects as exc:
            raise LaunchError(str(exc)) from None
    return summarise_transfer(transfer, readers)
