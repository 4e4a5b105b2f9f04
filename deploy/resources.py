"""What a deploy created, as plain records, and how to delete each kind.

Records are dicts so they go into the deploy result JSON as they are:
    {"type": "endpoint", "name": ...}      {"type": "endpoint_config", "name": ...}
    {"type": "model", "name": ...}         {"type": "transform_job", "name": ...}
    {"type": "model_package", "arn": ...}  {"type": "model_package_group", "name": ...}
    {"type": "s3_object", "uri": ...}      {"type": "s3_prefix", "uri": ...}
    {"type": "s3_bucket", "name": ...}
"""
from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import ClientError

from deploy.aws import S3Uri, error_code, error_message, list_objects
from deploy.errors import DeployError

log = logging.getLogger(__name__)

# Deletion order: what uses a thing goes before it.
ORDER = ["endpoint", "endpoint_config", "transform_job", "model", "model_package",
         "model_package_group", "s3_object", "s3_prefix", "s3_bucket"]
SERVING = {"endpoint", "endpoint_config", "transform_job", "model"}
REGISTRY = {"model_package", "model_package_group"}
STORAGE = {"s3_object", "s3_prefix", "s3_bucket"}


def label(resource: dict[str, str]) -> str:
    return f"{resource['type']} {resource.get('name') or resource.get('arn') or resource.get('uri')}"


def _gone(exc: ClientError) -> bool:
    message = error_message(exc)
    return error_code(exc) in ("ResourceNotFound", "NoSuchBucket", "NoSuchKey", "404") or (
        error_code(exc) == "ValidationException" and ("Could not find" in message or "does not exist" in message))


def _delete_prefix(s3: Any, uri: S3Uri) -> bool:
    """Delete every object under `uri`; False when its bucket is already gone (nothing to delete)."""
    try:
        keys = [obj["Key"] for obj in list_objects(s3, uri)]
    except DeployError:
        if error_code_of_bucket(s3, uri.bucket) in ("404", "NoSuchBucket"):
            return False
        raise
    for start in range(0, len(keys), 1000):
        chunk = [{"Key": k} for k in keys[start:start + 1000]]
        s3.delete_objects(Bucket=uri.bucket, Delete={"Objects": chunk, "Quiet": True})
    return True


def error_code_of_bucket(s3: Any, bucket: str) -> str | None:
    """HeadBucket's error code for `bucket` (404 when it is gone), None when it exists."""
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        return error_code(exc)
    return None


def failure_reason(exc: ClientError) -> str:
    """Why a delete failed, in one line: AWS's code and message, or what an HTML error page means."""
    operation = getattr(exc, "operation_name", "the call")
    message = error_message(exc)
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or error_code(exc)
    if "<html" in message.lower() or message.lstrip().startswith("<"):
        return (f"{operation} answered HTTP {status} with an HTML error page instead of an AWS error "
                "(this endpoint does not implement it)")
    return f"{operation}: {error_code(exc)}: {' '.join(message.split())}"


def delete(sm: Any, s3: Any, resource: dict[str, str]) -> dict[str, Any]:
    """Delete one resource: {"resource", "status": deleted|absent|kept|failed, "reason"?, "record"}."""
    outcome = _delete(sm, s3, resource)
    outcome["record"] = resource
    return outcome


def _delete(sm: Any, s3: Any, resource: dict[str, str]) -> dict[str, Any]:
    kind = resource["type"]
    try:
        if kind == "endpoint":
            sm.delete_endpoint(EndpointName=resource["name"])
        elif kind == "endpoint_config":
            sm.delete_endpoint_config(EndpointConfigName=resource["name"])
        elif kind == "model":
            sm.delete_model(ModelName=resource["name"])
        elif kind == "transform_job":
            status = sm.describe_transform_job(TransformJobName=resource["name"])["TransformJobStatus"]
            if status not in ("InProgress", "Stopping"):
                return {"resource": label(resource), "status": "kept",
                        "reason": f"transform jobs are records; this one is {status}"}
            sm.stop_transform_job(TransformJobName=resource["name"])
        elif kind == "model_package":
            sm.delete_model_package(ModelPackageName=resource["arn"])
        elif kind == "model_package_group":
            sm.delete_model_package_group(ModelPackageGroupName=resource["name"])
        elif kind == "s3_object":
            uri = S3Uri.parse(resource["uri"])
            s3.delete_object(Bucket=uri.bucket, Key=uri.key)
        elif kind == "s3_prefix":
            if not _delete_prefix(s3, S3Uri.parse(resource["uri"])):
                return {"resource": label(resource), "status": "absent"}
        elif kind == "s3_bucket":
            s3.delete_bucket(Bucket=resource["name"])
        else:
            return {"resource": label(resource), "status": "failed", "reason": f"unknown type {kind!r}"}
    except ClientError as exc:
        if _gone(exc):
            return {"resource": label(resource), "status": "absent"}
        reason = failure_reason(exc)
        log.warning("could not delete %s: %s", label(resource), reason)
        return {"resource": label(resource), "status": "failed", "reason": reason}
    log.info("deleted %s", label(resource))
    return {"resource": label(resource), "status": "deleted"}


def delete_all(sm: Any, s3: Any, resources: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Delete `resources` in dependency order (each once), reporting each."""
    unique = {label(r): r for r in resources}.values()
    ordered = sorted(unique, key=lambda r: ORDER.index(r["type"]) if r["type"] in ORDER else len(ORDER))
    return [delete(sm, s3, r) for r in ordered]
