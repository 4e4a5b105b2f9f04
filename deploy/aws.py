"""boto3 plumbing shared by the deploy steps: clients, S3 URIs, buckets, listings, error triage."""
from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass
from typing import Any, Iterator

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, WaiterError

from deploy.errors import AwsCallError, DeployError, Refusal

log = logging.getLogger(__name__)

# Error codes that mean "this account may not do that here": the chain falls back on them.
REFUSAL_CODES = {"AccessDeniedException", "AccessDenied", "ResourceLimitExceeded",
                 "UnauthorizedOperation", "NotAuthorized", "403"}
# Messages that mean the same under another code (e.g. ValidationException for an instance type
# the account or region does not offer).
REFUSAL_MESSAGES = re.compile(
    r"explicit deny|not authorized to perform|account-level service limit|"
    r"instance type .*not (supported|allowed|permitted|available)|"
    r"(is )?not (supported|allowed|permitted|available) (in|for) (this|your) (region|account)",
    re.IGNORECASE)
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def session(region: str | None = None) -> boto3.session.Session:
    return boto3.session.Session(region_name=region)


def client(service: str, region: str | None = None, max_pool: int = 10) -> Any:
    """A boto3 client; AWS_ENDPOINT_URL (a sandbox) is honoured by boto3 itself."""
    config = Config(retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=max_pool)
    return session(region).client(service, config=config)


@dataclass(frozen=True)
class S3Uri:
    bucket: str
    key: str = ""

    @classmethod
    def parse(cls, uri: str, what: str = "S3 URI") -> "S3Uri":
        match = re.match(r"^s3://([a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(/(.*))?$", uri or "")
        if not match:
            raise DeployError(f"{what} {uri!r} is not an S3 URI: expected s3://bucket/prefix "
                              "(bucket: 3-63 lowercase letters, digits, dots, hyphens)")
        return cls(match.group(1), match.group(3) or "")

    def child(self, *parts: str) -> "S3Uri":
        key = "/".join(p.strip("/") for p in (self.key, *parts) if p.strip("/"))
        return S3Uri(self.bucket, key)

    def as_prefix(self) -> "S3Uri":
        return S3Uri(self.bucket, self.key if not self.key or self.key.endswith("/") else self.key + "/")

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def is_s3(location: str) -> bool:
    return str(location).startswith("s3://")


def resource_name(*parts: str, stamp: str | None = None) -> str:
    """A SageMaker resource name from parts plus a timestamp: letters, digits, hyphens, <= 63."""
    stamp = stamp if stamp is not None else time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    text = "-".join(p for p in (*parts, stamp) if p)
    text = re.sub(r"[^a-zA-Z0-9]+", "-", text).strip("-")
    if len(text) > 63:
        text = (text[:63 - len(stamp) - 1].rstrip("-") + "-" + stamp) if stamp else text[:63]
    return check_name(text, "name")


def check_name(name: str, field: str) -> str:
    if not NAME_PATTERN.match(name or ""):
        raise DeployError(f"{field} {name!r} is not a valid SageMaker name: expected 1-63 letters, "
                          "digits and hyphens, starting with a letter or digit")
    return name


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def error_message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", str(exc)))


def is_refusal(exc: ClientError) -> bool:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return (error_code(exc) in REFUSAL_CODES or status == 403
            or bool(REFUSAL_MESSAGES.search(error_message(exc))))


def triage(exc: ClientError, operation: str) -> DeployError:
    """A Refusal when the account does not allow `operation` here, else an AwsCallError."""
    if is_refusal(exc):
        return Refusal(operation, error_code(exc), error_message(exc))
    return AwsCallError(operation, error_code(exc), error_message(exc))


def call(api: Any, operation: str, **kwargs: Any) -> dict[str, Any]:
    """Call `api.<snake_case operation>(**kwargs)`; failures become Refusal or AwsCallError."""
    method = getattr(api, re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower())
    try:
        return method(**kwargs)
    except ClientError as exc:
        raise triage(exc, operation) from exc


def wait(api: Any, waiter_name: str, operation: str, timeout_s: float, status_of: Any,
         delay_s: float = 15.0, **kwargs: Any) -> None:
    """Run a boto3 waiter for at most `timeout_s`; a Failed state or timeout is a Refusal."""
    delay = max(1, min(int(delay_s), int(timeout_s) or 1))
    attempts = max(1, math.ceil(timeout_s / delay))
    try:
        api.get_waiter(waiter_name).wait(WaiterConfig={"Delay": delay, "MaxAttempts": attempts}, **kwargs)
    except WaiterError as exc:
        last = exc.last_response or {}
        if "Error" in last:
            code = str(last["Error"].get("Code", "Unknown"))
            message = str(last["Error"].get("Message", ""))
            if code in REFUSAL_CODES or REFUSAL_MESSAGES.search(message):
                raise Refusal(operation, code, message) from exc
            raise AwsCallError(operation, code, message) from exc
        status, reason = status_of(last)
        if "Max attempts exceeded" in str(exc):
            raise Refusal(operation, "WaiterTimeout",
                          f"still {status} after {timeout_s:.0f} s (raise the timeout to wait longer)") from exc
        raise Refusal(operation, str(status or "Failed"), str(reason or exc)) from exc


def ensure_bucket(s3: Any, bucket: str, create: bool, region: str | None) -> bool:
    """True when the bucket was created now. Without `create`, a missing bucket is an error."""
    try:
        s3.head_bucket(Bucket=bucket)
        return False
    except ClientError as exc:
        if error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
            raise triage(exc, "HeadBucket") from exc
    if not create:
        raise DeployError(f"bucket {bucket!r} does not exist: create it or pass --create-bucket")
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if region and region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3.create_bucket(**kwargs)
    except ClientError as exc:
        if error_code(exc) != "BucketAlreadyOwnedByYou":
            raise triage(exc, "CreateBucket") from exc
        return False
    log.info("created bucket s3://%s", bucket)
    return True


def list_objects(s3: Any, uri: S3Uri) -> Iterator[dict[str, Any]]:
    """Every object under `uri` (paginated): dicts with Key, Size, LastModified, ETag."""
    paginator = s3.get_paginator("list_objects_v2")
    try:
        for page in paginator.paginate(Bucket=uri.bucket, Prefix=uri.key):
            yield from page.get("Contents", [])
    except ClientError as exc:
        if error_code(exc) == "NoSuchBucket":
            raise DeployError(f"bucket {uri.bucket!r} (from {uri}) does not exist") from exc
        raise triage(exc, "ListObjectsV2") from exc


def region_of(api: Any) -> str:
    return str(api.meta.region_name)
