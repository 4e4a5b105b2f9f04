"""What `convlab launch` checks before any money is spent, dry run or not, and how a dry run tells it.

- the data is read as the job will read it (the training readers, with their validation: corrupt
  files, mixed formats, classes that disagree), and counted per channel and class;
- the data set goes to its own S3 prefix, named by its content (convlab/data/<folder>-<digest>/),
  so two data sets never mix; a channel prefix holding objects that are not in the local data is
  refused, since the job would read them too;
- a dry run's file list is summarised: counts and sizes per channel, classes, the first few paths.
"""
from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
from pathlib import Path
from typing import Any

from convlab.s3io import UploadPlan, file_md5, list_objects

log = logging.getLogger("convlab.launch")

DATA_PREFIX = "convlab/data"
FIRST_PATHS = 5


def check_docker() -> None:
    """LaunchError unless a Docker engine answers `docker info`."""
    from convlab.sagemaker_setup import LaunchError

    hint = "train without Docker with `convlab train --local --train DATA_DIR`"
    if shutil.which("docker") is None:
        raise LaunchError(f"--local-container runs the training image with Docker, and there is no "
                          f"`docker` command here: {hint}")
    try:
        running = subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        running = False
    if not running:
        raise LaunchError(f"--local-container needs a running Docker engine (`docker info` failed): {hint}")


class ForeignObjects(ValueError):
    """A channel prefix already holds objects that are not part of the data set being launched."""


def read_as_the_job_will(data: Path) -> dict[str, dict[str, Any]]:
    """{channel: {"images": n, "image_shape": [...], "classes": {name: count}}}; DataError if unreadable."""
    import numpy as np

    from training.data import load_channels

    data = Path(data)
    channels = {"train": str(data)}
    if (data / "train").is_dir():
        channels = {c: str(data / c) for c in ("train", "test") if (data / c).is_dir()}
    log.info("reading %s as the job will (%s)", data, ", ".join(channels))
    train, test = load_channels(channels)
    summary = {}
    for name, found in (("train", train), ("test", test)):
        if found is None:
            continue
        counts = np.bincount(found.labels, minlength=len(found.classes))
        summary[name] = {"images": int(len(found.labels)), "image_shape": list(found.images.shape[1:]),
                         "classes": {str(c): int(n) for c, n in zip(found.classes, counts)}}
    return summary


def dataset_prefix(data: Path, plan: dict[str, list[tuple[Path, str]]]) -> str:
    """convlab/data/<folder name>-<12 hex digits of the files' names and contents>."""
    digest = hashlib.sha256()
    for channel in sorted(plan):
        for path, relative in sorted(plan[channel], key=lambda pair: pair[1]):
            digest.update(f"{channel}/{relative}\0{file_md5(path)}\0".encode())
    name = "".join(c if c.isalnum() or c in "-_." else "-" for c in Path(data).resolve().name) or "data"
    return f"{DATA_PREFIX}/{name}-{digest.hexdigest()[:12]}"


def offline_plans(files: list[tuple[Path, str]]) -> list[UploadPlan]:
    """Upload plans when S3 cannot be read (no credentials): every file counted as to upload."""
    return [UploadPlan(Path(path), key, file_md5(Path(path)), Path(path).stat().st_size) for path, key in files]


def refuse_foreign_objects(s3: Any, transfer: dict[str, Any]) -> None:
    """ForeignObjects when a channel prefix holds objects that the local data does not have."""
    from botocore.exceptions import ClientError

    bucket, files = transfer["bucket"], transfer["files"]
    for channel, uri in transfer["channels"].items():
        expected = {f["key"] for f in files if f["channel"] == channel}
        try:
            listing = list(list_objects(s3, bucket, f"{transfer['prefix']}/{channel}/"))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchBucket":
                return  # a bucket still to be created holds nothing
            raise
        extra = sorted(obj["Key"] for obj in listing if obj["Key"] not in expected)
        if extra:
            raise ForeignObjects(
                f"{uri} already holds {len(extra)} object{'s' if len(extra) != 1 else ''} that are not in "
                f"{transfer['data']} (e.g. s3://{bucket}/{extra[0]}): the job would train on them too. Leave "
                f"--prefix out (each data set then gets its own prefix), choose another --prefix, or delete "
                f"them (aws s3 rm --recursive {uri})")


def summarise_transfer(transfer: dict[str, Any], readers: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    """A dry run's account of an upload: per channel counts, size and classes; the first few paths."""
    bucket, files = transfer["bucket"], transfer["files"]
    channels = {}
    for channel, uri in transfer["channels"].items():
        mine = [f for f in files if f["channel"] == channel]
        channels[channel] = {"uri": uri, "files": len(mine), "bytes": sum(f["bytes"] for f in mine),
                             "would_upload": sum(1 for f in mine if not f["present"]),
                             "unchanged": sum(1 for f in mine if f["present"])}
        if readers and channel in readers:
            channels[channel].update(readers[channel])
    upload = [f for f in files if not f["present"]]
    return {"bucket": bucket, "prefix": transfer["prefix"], "channels": channels,
            "files": len(files), "total_bytes": sum(f["bytes"] for f in files),
            "upload_bytes": sum(f["bytes"] for f in upload),
            "first_paths": [f"{f['path']} -> s3://{bucket}/{f['key']}" for f in files[:FIRST_PATHS]],
            "more_paths": max(0, len(files) - FIRST_PATHS), "s3_note": transfer.get("s3_note")}
