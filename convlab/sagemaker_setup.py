"""What a launch needs from the account: a SageMaker session with a default bucket, the execution
role, and the training image (AWS's prebuilt TensorFlow training image for the region, resolved
through the SDK, unless an image URI is given)."""
from __future__ import annotations

import contextlib
import logging
import os
import re
from typing import Any, Iterator

log = logging.getLogger("convlab.launch")

ROLE_ENV = "SAGEMAKER_ROLE_ARN"
MIN_TF = (2, 16)  # the entry point needs Keras 3
OFFLINE_ACCOUNT = "account"


class LaunchError(Exception):
    """A launch that cannot go on, for a reason the user can fix; the message says which."""


def sagemaker_session(region: str | None = None, bucket: str | None = None, boto_session: Any = None,
                      offline_ok: bool = False) -> Any:
    """A SageMaker Session whose default bucket is `bucket` or sagemaker-<region>-<account>; offline_ok
    (a dry run) without credentials: the account shows as ACCOUNT."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError
    from sagemaker.core.helper.session_helper import Session

    boto_session = boto_session or boto3.Session(region_name=region)
    if not boto_session.region_name:
        raise LaunchError("no AWS region: pass --region or set AWS_DEFAULT_REGION (or region in ~/.aws/config)")
    if not bucket and offline_ok and boto_session.get_credentials() is None:
        bucket = f"sagemaker-{boto_session.region_name}-{OFFLINE_ACCOUNT}"
    if not bucket:
        try:
            account = boto_session.client("sts").get_caller_identity()["Account"]
        except (BotoCoreError, ClientError) as exc:
            raise LaunchError(f"cannot tell the AWS account for the default bucket ({exc}): configure "
                              "credentials (aws configure) or pass --bucket") from None
        bucket = f"sagemaker-{boto_session.region_name}-{account}"
    return Session(boto_session=boto_session, default_bucket=bucket)


@contextlib.contextmanager
def role_checks_off(active: bool) -> Iterator[None]:
    """The SDK's IAM check of the role skipped (SAGEMAKER_VALIDATE_ROLE=false) while `active`: without
    credentials IAM cannot be read."""
    saved = os.environ.get("SAGEMAKER_VALIDATE_ROLE")
    if active:
        os.environ["SAGEMAKER_VALIDATE_ROLE"] = "false"
    try:
        yield
    finally:
        if active:
            os.environ.pop("SAGEMAKER_VALIDATE_ROLE", None) if saved is None else \
                os.environ.__setitem__("SAGEMAKER_VALIDATE_ROLE", saved)


def is_offline(session: Any) -> bool:
    """No AWS credentials reach this session: a dry run then checks what it can without an account."""
    return session.boto_session.get_credentials() is None


def offline_role(role: str | None) -> str:
    """A dry run without credentials takes the role ARN as given (IAM cannot be read), after a syntax check."""
    role = role or os.environ.get(ROLE_ENV)
    if not role:
        raise LaunchError(f"no AWS credentials and no role: pass --role arn:aws:iam::ACCOUNT:role/NAME (or set "
                          f"{ROLE_ENV}) to check the rest offline, or use --sandbox for the whole plan without "
                          "an account")
    if not re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+", role):
        raise LaunchError(f"--role {role}: not an IAM role ARN; expected arn:aws:iam::ACCOUNT:role/NAME")
    log.warning("no AWS credentials: the dry run checks the data, hyperparameters, image and request offline; "
                "the role %s and the S3 bucket are not checked (--sandbox runs the whole plan offline)", role)
    return role


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

    given = role or os.environ.get(ROLE_ENV)
    try:
        return resolve_and_validate_role(provided_role=given, role_type="training", sagemaker_session=session)
    except (RoleValidationError, ValueError, BotoCoreError, ClientError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if given:
            source = "--role" if role else f"${ROLE_ENV}"
            raise LaunchError(f"the execution role {source} {given} cannot be used ({reason}): check that it "
                              "exists in this account and trusts sagemaker.amazonaws.com, and that AWS "
                              "credentials are configured (aws configure); convlab launch --sandbox --dry-run "
                              "shows the plan without an account") from None
        raise LaunchError(f"no usable SageMaker execution role ({reason}): pass --role "
                          f"arn:aws:iam::ACCOUNT:role/NAME or set {ROLE_ENV} (Learner Lab: the LabRole "
                          "ARN; in SageMaker Studio the notebook's own role is used)") from None


def check_instance_type(instance_type: str) -> None:
    """Refuse an instance type SageMaker training does not offer (botocore's TrainingInstanceType list)."""
    import difflib

    import botocore.session

    known = botocore.session.get_session().get_service_model("sagemaker").shape_for("TrainingInstanceType").enum
    if instance_type not in known:
        close = difflib.get_close_matches(instance_type, known, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "for example ml.m5.xlarge or ml.g5.xlarge"
        raise LaunchError(f"--instance-type {instance_type}: not a SageMaker training instance type ({len(known)} "
                          f"known to botocore); {hint}")


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
