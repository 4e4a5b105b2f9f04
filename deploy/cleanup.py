"""`convlab deploy cleanup`: delete what a deploy created, only where it created it.

A deploy result records where its resources live ("location"): the endpoint URL of a sandbox
(or other AWS-compatible endpoint), the region, and the account id STS gave. Cleanup talks to
that place only, and refuses (exit status 1, one line) when the place no longer answers or when
the current credentials, region or AWS_ENDPOINT_URL point somewhere else. A `--sandbox` run's
resources went with its sandbox: cleanup says that nothing remains and exits 0.

Exit status: 0 every chosen resource is deleted or already gone; 1 nothing was tried (bad result
file, place gone or different, AWS unreachable); 3 some resources could not be deleted (one line
each on stderr, with the reason).
"""
from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from deploy import aws
from deploy.errors import DeployError
from deploy.resources import REGISTRY, STORAGE, delete_all, label

EXIT_OK, EXIT_REFUSED, EXIT_PARTIAL = 0, 1, 3


class SandboxGone(DeployError):
    """The result's resources lived in a sandbox that has stopped: nothing of them remains."""


def read_result(path: Path) -> dict[str, Any]:
    try:
        result = json.loads(Path(path).read_text())
        list(result["resources"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DeployError(f"{path}: not a deploy result JSON with a \"resources\" list ({exc})") from exc
    return result


def answers(url: str, timeout_s: float = 3.0) -> bool:
    """True when something answers HTTP at `url` (any status), False when nothing listens."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, socket.timeout, ConnectionError, OSError):
        return False


def locate(result: dict[str, Any], path: Path, region_flag: str | None) -> tuple[str, str | None]:
    """(region, endpoint URL) of the place the result's resources live, after checking that the
    current credentials and settings reach that same place; a DeployError (one line) if not."""
    where = result.get("location")
    if not isinstance(where, dict) or not where.get("region") or not where.get("account"):
        raise DeployError(f"{path} does not record where its resources live (no \"location\" with region and "
                          "account): delete them by hand in the account that made them")
    url, region, account = where.get("endpoint_url"), str(where["region"]), str(where["account"])
    place = f"the sandbox at {url}" if where.get("sandbox") else (url or f"account {account} in {region}")
    if url and not answers(url):
        if where.get("sandbox"):
            raise SandboxGone(f"{path}: its resources lived in {place}, which stopped when that run ended: "
                              "nothing remains, nothing to delete")
        raise DeployError(f"{path}: its resources lived in {place}, which no longer answers: "
                          "they are gone with it, nothing to delete")
    current_url = os.environ.get("AWS_ENDPOINT_URL") or None
    if not url and current_url:
        raise DeployError(f"{path}: its resources live in AWS ({place}) but AWS_ENDPOINT_URL points at "
                          f"{current_url}: unset it to clean up there")
    current_region = region_flag or aws.session().region_name
    if current_region and current_region != region:
        raise DeployError(f"{path}: its resources live in region {region}, not {current_region} "
                          f"(--region or the default region): pass --region {region}")
    found = aws.call(aws.client("sts", region, endpoint_url=url), "GetCallerIdentity")["Account"]
    if str(found) != account:
        raise DeployError(f"{path}: its resources live in account {account}, but the current credentials "
                          f"are account {found}: use credentials for {account}")
    return region, url


def cleanup(path: Path, *, registry: bool, storage: bool,
            region_flag: str | None = None) -> tuple[dict[str, Any], list[str], int]:
    """Delete the chosen resources of a deploy result. Returns (report, one line per resource that
    could not be deleted, exit status)."""
    result = read_result(path)
    try:
        region, url = locate(result, path, region_flag)
    except SandboxGone as gone:
        return {"result": str(path), "location": result["location"], "deleted": [], "kept": [],
                "nothing_remains": str(gone)}, [], EXIT_OK
    resources = list(result["resources"])
    skip = (set() if registry else REGISTRY) | (set() if storage else STORAGE)
    chosen = [r for r in resources if r["type"] not in skip]
    outcomes = delete_all(aws.client("sagemaker", region, endpoint_url=url),
                          aws.client("s3", region, endpoint_url=url), chosen)
    for outcome in outcomes:
        outcome.pop("record", None)
    failed = [f"could not delete {o['resource']}: {o.get('reason', 'unknown reason')}"
              for o in outcomes if o["status"] == "failed"]
    kept = [label(r) for r in resources if r["type"] in skip]
    report = {"result": str(path), "location": result["location"], "deleted": outcomes, "kept": kept}
    return report, failed, EXIT_PARTIAL if failed else EXIT_OK
