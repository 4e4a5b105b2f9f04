"""Upload model.tar.gz, CreateModel, and register a model package in the Model Registry (boto3).

Every step is idempotent: a model that already exists with the same image and archive URL is
reused; one with the same name but another image or URL is an error that names both. A model
package is reused only when it registers the same image, archive URL and archive content (the
sha256 of model.tar.gz, kept in its CustomerMetadataProperties as `archive_sha256`): a retrained
archive uploaded to the same URL registers a new version in the group.
"""
from __future__ import annotations

import hashlib
import json
import logging
import tarfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deploy.aws import S3Uri, call, check_name, ensure_bucket
from deploy.errors import AwsCallError, ImageUriError, RegistrationError

log = logging.getLogger(__name__)

CONTENT_TYPES = ["image/png", "application/x-image", "application/json", "application/x-npy"]
RESPONSE_TYPES = ["application/json"]
DEFAULT_INSTANCE_TYPE = "ml.m5.large"
DIGEST_KEY = "archive_sha256"


@dataclass
class Registration:
    model_name: str
    model_arn: str
    image_uri: str
    model_data_url: str
    role_arn: str
    package_group: str | None = None
    package_arn: str | None = None
    created: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def archive_json(archive: Path, name: str) -> dict[str, Any]:
    """A top-level JSON member (config.json, metrics.json) of model.tar.gz."""
    with tarfile.open(archive, "r:gz") as tar:
        member = tar.extractfile(name)
        if member is None:
            raise RegistrationError(f"{archive} has no {name}")
        return json.loads(member.read())


def archive_sha256(archive: Path) -> str:
    """The hex sha256 of the archive's bytes: what a model package's content is keyed on."""
    digest = hashlib.sha256()
    with open(archive, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _supported_tf_versions() -> list[tuple[int, int]]:
    """(major, minor) of every TensorFlow inference image the installed SDK knows, ascending."""
    from sagemaker.core import image_uris
    config = image_uris.config_for_framework("tensorflow")["inference"]
    found = {tuple(int(x) for x in v.split(".")[:2]) for v in config["versions"]}
    return sorted(found)  # type: ignore[arg-type]


def resolve_image_uri(image_uri: str | None, region: str, tf_version: str | None,
                      instance_type: str = DEFAULT_INSTANCE_TYPE) -> tuple[str, str]:
    """(image URI, where it came from). The user's URI wins; else AWS's TF Serving image."""
    if image_uri:
        return image_uri, "given"
    if not tf_version:
        raise ImageUriError("no --image-uri given and config.json has no versions.tensorflow to "
                            "look up AWS's TensorFlow Serving image: pass --image-uri")
    try:
        from sagemaker.core import image_uris
    except ImportError as exc:
        raise ImageUriError("no --image-uri given and the SageMaker SDK (pip install 'sagemaker>=3') "
                            "is not installed to look up AWS's TensorFlow Serving image: pass "
                            "--image-uri (convlab's image in ECR, or tensorflow-inference)") from exc
    try:
        wanted = tuple(int(x) for x in tf_version.split(".")[:2])
    except ValueError:
        raise ImageUriError(f"config.json versions.tensorflow is {tf_version!r}; expected a version "
                            "like 2.16.1 (or pass --image-uri)") from None
    supported = _supported_tf_versions()
    usable = [v for v in supported if v <= wanted]
    if not usable:
        known = ", ".join(f"{a}.{b}" for a, b in supported)
        raise ImageUriError(f"AWS has no TensorFlow Serving image for TF {tf_version} or older in "
                            f"this SDK (known: {known}): pass --image-uri")
    version = "%d.%d" % usable[-1]
    if usable[-1] != wanted:
        log.warning("no TensorFlow Serving image for TF %s; using the newest older one, %s",
                    tf_version, version)
    uri = image_uris.retrieve("tensorflow", region=region, version=version,
                              instance_type=instance_type, image_scope="inference")
    return uri, f"sagemaker.core.image_uris tensorflow {version} inference"


def upload_archive(s3: Any, archive: Path, dest: S3Uri, create_bucket: bool,
                   region: str | None) -> tuple[S3Uri, S3Uri, list[dict[str, str]]]:
    """Upload model.tar.gz and its metrics.json under `dest`; return their URIs and what was created."""
    created: list[dict[str, str]] = []
    if ensure_bucket(s3, dest.bucket, create_bucket, region):
        created.append({"type": "s3_bucket", "name": dest.bucket})
    model_uri, metrics_uri = dest.child("model.tar.gz"), dest.child("metrics.json")
    s3.upload_file(str(archive), model_uri.bucket, model_uri.key)
    metrics = json.dumps(archive_json(archive, "metrics.json")).encode()
    s3.put_object(Bucket=metrics_uri.bucket, Key=metrics_uri.key, Body=metrics,
                  ContentType="application/json")
    created += [{"type": "s3_object", "uri": str(model_uri)}, {"type": "s3_object", "uri": str(metrics_uri)}]
    log.info("uploaded %s", model_uri)
    return model_uri, metrics_uri, created


def _not_found(exc: AwsCallError) -> bool:
    return exc.code in ("ValidationException", "ResourceNotFound") and (
        "not find" in exc.message or "does not exist" in exc.message)


def create_model(sm: Any, name: str, image_uri: str, model_data_url: str, role_arn: str) -> tuple[str, bool]:
    """CreateModel unless a model of that name already serves this image and archive."""
    check_name(name, "model name")
    try:
        existing = call(sm, "DescribeModel", ModelName=name)
    except AwsCallError as exc:
        if not _not_found(exc):
            raise
    else:
        container = existing.get("PrimaryContainer", {})
        if container.get("Image") == image_uri and container.get("ModelDataUrl") == model_data_url:
            log.info("model %s already exists with this image and archive: reusing it", name)
            return existing["ModelArn"], False
        raise RegistrationError(
            f"model {name!r} exists with image {container.get('Image')!r} and archive "
            f"{container.get('ModelDataUrl')!r}, not {image_uri!r} and {model_data_url!r}: "
            "pass another --model-name or delete it (deploy cleanup)")
    reply = call(sm, "CreateModel", ModelName=name, ExecutionRoleArn=role_arn,
                 PrimaryContainer={"Image": image_uri, "ModelDataUrl": model_data_url,
                                   "Mode": "SingleModel"})
    log.info("created model %s", name)
    return reply["ModelArn"], True


def _ensure_group(sm: Any, group: str) -> bool:
    try:
        call(sm, "DescribeModelPackageGroup", ModelPackageGroupName=group)
        return False
    except AwsCallError as exc:
        if not _not_found(exc):
            raise
    call(sm, "CreateModelPackageGroup", ModelPackageGroupName=group,
         ModelPackageGroupDescription="convlab image classifiers (model.tar.gz + metrics)")
    log.info("created model package group %s", group)
    return True


def _existing_package(sm: Any, group: str, image_uri: str, model_data_url: str, sha256: str) -> str | None:
    """A package in `group` for this image, URL and archive content (packages without a digest
    never match: their content is unknown)."""
    for page in sm.get_paginator("list_model_packages").paginate(ModelPackageGroupName=group):
        for summary in page.get("ModelPackageSummaryList", []):
            arn = summary["ModelPackageArn"]
            described = call(sm, "DescribeModelPackage", ModelPackageName=arn)
            if described.get("CustomerMetadataProperties", {}).get(DIGEST_KEY) != sha256:
                continue
            for container in described.get("InferenceSpecification", {}).get("Containers", []):
                if container.get("Image") == image_uri and container.get("ModelDataUrl") == model_data_url:
                    return arn
    return None


def _metadata(metrics: dict[str, Any], sha256: str) -> dict[str, str]:
    keys = ("model_type", "test_accuracy", "test_loss", "val_accuracy", "params", "epochs_completed")
    found = {k: (f"{metrics[k]:.6g}" if isinstance(metrics[k], float) else str(metrics[k]))
             for k in keys if k in metrics}
    return {**found, DIGEST_KEY: sha256}


def register_package(sm: Any, group: str, image_uri: str, model_data_url: str, metrics_uri: str,
                     metrics: dict[str, Any], sha256: str, approval: str = "PendingManualApproval",
                     instance_type: str = DEFAULT_INSTANCE_TYPE) -> tuple[str, list[dict[str, str]]]:
    """A model package for this image and archive (`sha256` of its bytes) in `group` (both
    created if missing); an archive with other content at the same URL is a new version."""
    check_name(group, "model package group")
    created = [{"type": "model_package_group", "name": group}] if _ensure_group(sm, group) else []
    existing = _existing_package(sm, group, image_uri, model_data_url, sha256)
    if existing:
        log.info("model package %s already registers this archive (sha256 %s): reusing it", existing, sha256[:12])
        return existing, created
    reply = call(
        sm, "CreateModelPackage", ModelPackageGroupName=group, ModelApprovalStatus=approval,
        ModelPackageDescription=f"{metrics.get('model_type', 'model')} test_accuracy="
                                f"{metrics.get('test_accuracy', 'n/a')}",
        InferenceSpecification={
            "Containers": [{"Image": image_uri, "ModelDataUrl": model_data_url}],
            "SupportedContentTypes": CONTENT_TYPES, "SupportedResponseMIMETypes": RESPONSE_TYPES,
            "SupportedRealtimeInferenceInstanceTypes": [instance_type],
            "SupportedTransformInstanceTypes": [instance_type]},
        ModelMetrics={"ModelQuality": {"Statistics": {"ContentType": "application/json",
                                                      "S3Uri": metrics_uri}}},
        CustomerMetadataProperties=_metadata(metrics, sha256))
    arn = reply["ModelPackageArn"]
    created.append({"type": "model_package", "arn": arn})
    log.info("registered model package %s", arn)
    return arn, created


def register(sm: Any, *, archive: Path, model_name: str, image_uri: str, model_data_url: str,
             metrics_uri: str, role_arn: str, group: str | None,
             approval: str = "PendingManualApproval",
             instance_type: str = DEFAULT_INSTANCE_TYPE) -> Registration:
    """CreateModel, then (when `group`) the model package. Refusals propagate to the caller."""
    arn, created = create_model(sm, model_name, image_uri, model_data_url, role_arn)
    result = Registration(model_name, arn, image_uri, model_data_url, role_arn,
                          created=[{"type": "model", "name": model_name}] if created else [])
    if group:
        result.package_group = group
        result.package_arn, made = register_package(
            sm, group, image_uri, model_data_url, metrics_uri, archive_json(archive, "metrics.json"),
            archive_sha256(archive), approval, instance_type)
        result.created += made
    return result


