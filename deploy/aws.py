"""boto3 plumbing shared by the deploy steps: clients, S3 URIs, buckets, listings, error triage."""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from convlab import s3io
from deploy.errors import AwsCallError, DeployError, Refusal, StepFailed

log = logging.getLogger(__name__)

# The account refusing a step, in four classes; only these make the chain fall back. An HTTP 403
# alone is not one (bad or expired credentials are answered 403 too); "403" is the code botocore
# gives S3's bodiless HEAD answers, which are refusals.
DENIED_CODES = {"AccessDeniedException", "AccessDenied", "UnauthorizedOperation", "403"}
QUOTA_CODES = {"ResourceLimitExceeded", "ServiceQuotaExceededException"}
CAPACITY_CODES = {"InsufficientCapacity", "InsufficientCapacityError", "InsufficientInstanceCapacity",
                  "CapacityError"}
DENIED_MESSAGE = re.compile(r"explicit deny|not authorized to perform", re.IGNORECASE)
QUOTA_MESSAGE = re.compile(r"account-level service limit|service quota", re.IGNORECASE)
CAPACITY_MESSAGE = re.compile(r"insufficient\W?capacity|unable to provision requested ML compute capacity",
                              re.IGNORECASE)
INSTANCE_TYPE_MESSAGE = re.compile(
    r"instance type\b.{0,120}?\bnot (supported|available|offered)|"
    r"\bnot (supported|available|offered)\b.{0,60}\binstance type", re.IGNORECASE)
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def session(region: str | None = None, credentials: dict[str, str] | None = None) -> boto3.session.Session:
    """A boto3 session; `credentials` (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) replace the usual chain."""
    keys = credentials or {}
    return boto3.session.Session(region_name=region, aws_access_key_id=keys.get("AWS_ACCESS_KEY_ID"),
                                 aws_secret_access_key=keys.get("AWS_SECRET_ACCESS_KEY"))


def client(service: str, region: str | None = None, max_pool: int = 10,
           endpoint_url: str | None = None, credentials: dict[str, str] | None = None) -> Any:
    """A boto3 client; without `endpoint_url`, AWS_ENDPOINT_URL (a sandbox) is honoured by boto3 itself."""
    config = Config(retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=max_pool)
    return session(region, credentials).client(service, config=config, endpoint_url=endpoint_url)


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


def refusal_kind(code: str, message: str) -> str | None:
    """"denied", "quota", "capacity" or "instance type" when an AWS error means the account
    refuses the step here; None for anything else (a bad argument, bad credentials, a failure, a bug)."""
    if code in DENIED_CODES or DENIED_MESSAGE.search(message):
        return "denied"
    if code in QUOTA_CODES or QUOTA_MESSAGE.search(message):
        return "quota"
    if code in CAPACITY_CODES or CAPACITY_MESSAGE.search(message):
        return "capacity"
    if code == "ValidationException" and INSTANCE_TYPE_MESSAGE.search(message):
        return "instance type"
    return None


def failure_refusal_kind(reason: str) -> str | None:
    """The refusal class of a resource's FailureReason: SageMaker reports capacity, quota and
    instance types it cannot provide by failing the endpoint or job. Anything else is None."""
    if CAPACITY_MESSAGE.search(reason):
        return "capacity"
    if QUOTA_MESSAGE.search(reason):
        return "quota"
    if INSTANCE_TYPE_MESSAGE.search(reason):
        return "instance type"
    return None


def is_refusal(exc: ClientError) -> bool:
    return refusal_kind(error_code(exc), error_message(exc)) is not None


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


def wait_until(describe: Callable[[], dict[str, Any]], status_key: str, pending: set[str], *,
               what: str, timeout_s: float, poll_s: float, timeout_hint: str) -> dict[str, Any]:
    """Poll `describe()` while its `status_key` is in `pending`; return the first other reply.

    Still pending after `timeout_s` is a StepFailed (status TimedOut) whose next step is
    `timeout_hint`: a slow resource is not a refusal.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        reply = describe()
        status = str(reply.get(status_key, "unknown"))
        if status not in pending:
            return reply
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise StepFailed(what, "TimedOut", f"still {status} after {timeout_s:.0f} s",
                             timeout_hint, {"timeout_s": timeout_s, "last_status": status})
        time.sleep(max(0.05, min(poll_s, remaining)))


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
    """Every object in the folder `uri` names (paginated; `s3://b/train` is `train/`, never
    `train-old/`): dicts with Key, Size, LastModified, ETag."""
    try:
        yield from s3io.list_folder(s3, uri.bucket, uri.key)
    except ClientError as exc:
        if error_code(exc) == "NoSuchBucket":
            raise DeployError(f"bucket {uri.bucket!r} (from {uri}) does not exist") from exc
        raise triage(exc, "ListObjectsV2") from exc


def region_of(api: Any) -> str:
    return str(api.meta.region_name)
