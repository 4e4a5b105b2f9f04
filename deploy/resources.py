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


def _delete_prefix(s3: Any, uri: S3Uri) -> None:
    keys = [obj["Key"] for obj in list_objects(s3, uri)]
    for start in range(0, len(keys), 1000):
        chunk = [{"Key": k} for k in keys[start:start + 1000]]
        s3.delete_objects(Bucket=uri.bucket, Delete={"Objects": chunk, "Quiet": True})


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
            _delete_prefix(s3, S3Uri.parse(resource["uri"]))
        elif kind == "s3_bucket":
            s3.delete_bucket(Bucket=resource["name"])
        else:
            return {"resource": label(resource), "status": "failed", "reason": f"unknown type {kind!r}"}
    except ClientError as exc:
        if _gone(exc):
            return {"resource": label(resource), "status": "absent"}
        log.warning("could not delete %s: %s", label(resource), error_message(exc))
        return {"resource": label(resource), "status": "failed",
                "reason": f"{error_code(exc)}: {error_message(exc)}"}
    log.info("deleted %s", label(resource))
    return {"resource": label(resource), "status": "deleted"}


def delete_all(sm: Any, s3: Any, resources: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Delete `resources` in dependency order (each once), reporting each."""
    unique = {label(r): r for r in resources}.values()
    ordered = sorted(unique, key=lambda r: ORDER.index(r["type"]) if r["type"] in ORDER else len(ORDER))
    return [delete(sm, s3, r) for r in ordered]
