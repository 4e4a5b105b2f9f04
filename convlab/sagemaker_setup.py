"""What a launch needs from the account: a SageMaker session with a default bucket, the execution
role, and the training image (AWS's prebuilt TensorFlow training image for the region, resolved
through the SDK, unless an image URI is given)."""
from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger("convlab.launch")

ROLE_ENV = "SAGEMAKER_ROLE_ARN"
MIN_TF = (2, 16)  # the entry point needs Keras 3


class LaunchError(Exception):
    """A launch that cannot go on, for a reason the user can fix; the message says which."""


def sagemaker_session(region: str | None = None, bucket: str | None = None, boto_session: Any = None) -> Any:
    """A SageMaker Session whose default bucket is `bucket` or sagemaker-<region>-<account>."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError
    from sagemaker.core.helper.session_helper import Session

    boto_session = boto_session or boto3.Session(region_name=region)
    if not boto_session.region_name:
        raise LaunchError("no AWS region: pass --region or set AWS_REGION (or region in ~/.aws/config)")
    if not bucket:
        try:
            account = boto_session.client("sts").get_caller_identity()["Account"]
        except (BotoCoreError, ClientError) as exc:
            raise LaunchError(f"cannot tell the AWS account for the default bucket ({exc}): configure "
                              "credentials (aws configure) or pass --bucket") from None
        bucket = f"sagemaker-{boto_session.region_name}-{account}"
    return Session(boto_session=boto_session, default_bucket=bucket)


def created_job_name(trainer: Any) -> str | None:
    """The name of the training job `trainer.train()` created, None when it created none (a dry
    run, a local container). Read from the SDK's public `ModelTrainer.output_data`, the URI
    {output path}/{job name}/output/output.tar.gz of the job it created."""
    try:
        uri = trainer.output_data
    except ValueError:  # no job was created
        return None
    return str(uri).rstrip("/").rsplit("/", 3)[-3]


def training_job(name: str, boto_session: Any) -> Any:
    """The SDK's TrainingJob resource of a job, described by name."""
    from sagemaker.core.resources import TrainingJob

    return TrainingJob.get(training_job_name=name, session=boto_session)


def bucket_name(session: Any) -> str:
    """The session's default bucket name, without creating the bucket (Session.default_bucket() does)."""
    return (session._default_bucket or session._default_bucket_name_override
            or session.generate_default_sagemaker_bucket_name(session.boto_session))


def resolve_role(role: str | None, session: Any) -> str:
    """The execution role ARN: `role`, $SAGEMAKER_ROLE_ARN, the SDK config, or the caller's own role."""
    from botocore.exceptions import BotoCoreError, ClientError
    from sagemaker.core.helper.iam_role_resolver import RoleValidationError, resolve_and_validate_role

    role = role or os.environ.get(ROLE_ENV)
    try:
        return resolve_and_validate_role(provided_role=role, role_type="training", sagemaker_session=session)
    except (RoleValidationError, ValueError, BotoCoreError, ClientError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise LaunchError(f"no usable SageMaker execution role ({reason}): pass --role "
                          f"arn:aws:iam::ACCOUNT:role/NAME or set {ROLE_ENV} (Learner Lab: the LabRole "
                          "ARN; in SageMaker Studio the notebook's own role is used)") from None


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def _installed_tensorflow() -> str | None:
    from importlib import metadata
    for name in ("tensorflow", "tensorflow-cpu"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def resolve_training_image(image_uri: str | None, region: str, instance_type: str,
                           framework_version: str | None = None) -> tuple[str, str]:
    """(image URI, where it came from): the given URI, else AWS's TensorFlow training image for the
    region, at the installed TF version (or the newest older one; TF 2.16+ for Keras 3)."""
    if image_uri:
        return image_uri, "given"
    from sagemaker.core import image_uris

    config = image_uris.config_for_framework("tensorflow")["training"]
    aliases = config["version_aliases"]
    known = sorted((v for v in aliases if _version(v) >= MIN_TF), key=_version)
    if framework_version:
        wanted = ".".join(framework_version.split(".")[:2])
        if wanted not in known:
            raise LaunchError(f"--framework-version {framework_version}: AWS has no TensorFlow training image "
                              f"for it in this SDK; expected one of {', '.join(known)}")
        version = wanted
    else:
        installed = _installed_tensorflow()
        usable = [v for v in known if installed is None or _version(v) <= _version(installed)[:2]]
        version = (usable or known)[-1]
    py_version = config["versions"][aliases[version]]["py_versions"][-1]
    uri = image_uris.retrieve("tensorflow", region=region, version=version, py_version=py_version,
                              instance_type=instance_type, image_scope="training")
    return uri, f"AWS TensorFlow {version} training image ({py_version})"
