"""`convlab launch --sandbox`: the whole launch against the embedded AWS (deploy.sandbox), offline.

The data is read and uploaded to the sandbox's S3, the training job is created through the SDK as
it would be in an account, and its record (DescribeTrainingJob) is shown. The sandbox's jobs report
Completed at once and train nothing, so there is no model: the record is the point. The sandbox
stops when the command ends; nothing is created in AWS, and no AWS host is contacted (the SDK's
telemetry is off, as in every local mode).
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

SANDBOX_BUCKET = "convlab-sandbox"
LAB_ROLE = "arn:aws:iam::123456789012:role/LabRole"
RECORD_FIELDS = ("TrainingJobName", "TrainingJobStatus", "AlgorithmSpecification", "RoleArn", "ResourceConfig",
                 "InputDataConfig", "OutputDataConfig", "HyperParameters", "StoppingCondition",
                 "EnableManagedSpotTraining", "CheckpointConfig")


def _without_empty_dicts(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_empty_dicts(v) for k, v in value.items() if not (isinstance(v, dict) and not v)}
    if isinstance(value, list):
        return [_without_empty_dicts(v) for v in value]
    return value


def drop_empty_dicts(parsed: Any = None, **_: Any) -> None:
    """moto answers some optional structures as {} (VpcConfig={}), which AWS leaves out and the SDK's
    shapes refuse: drop them from the sandbox's SageMaker answers."""
    if isinstance(parsed, dict):
        cleaned = _without_empty_dicts(parsed)
        parsed.clear()
        parsed.update(cleaned)


@contextlib.contextmanager
def sandbox_session(region: str | None, work_dir) -> Iterator[tuple[Any, Any]]:
    """(SageMaker Session on a fresh sandbox with its bucket, the sandbox); both gone after the block."""
    import boto3

    from convlab.sagemaker_setup import sagemaker_session
    from convlab.sdk_local import local_sdk
    from deploy.sandbox import DUMMY_CREDENTIALS, start_sandbox

    sandbox = start_sandbox(region=region or "us-east-1")
    saved = {name: os.environ.get(name) for name in sandbox.environ()}
    os.environ.update(sandbox.environ())  # the SDK builds some clients of its own: they must reach it too
    try:
        with local_sdk(work_dir):
            boto_session = boto3.Session(region_name=sandbox.region,
                                         aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                                         aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
            boto_session.events.register("after-call.sagemaker", drop_empty_dicts)
            boto_session.client("s3").create_bucket(Bucket=SANDBOX_BUCKET)
            yield sagemaker_session(sandbox.region, SANDBOX_BUCKET, boto_session), sandbox
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        sandbox.stop()


def job_record(session: Any, job_name: str) -> dict[str, Any]:
    """The parts of DescribeTrainingJob a user checks before spending money."""
    described = session.boto_session.client("sagemaker").describe_training_job(TrainingJobName=job_name)
    return {name: described[name] for name in RECORD_FIELDS if name in described}


def launch_in_sandbox(cfg: Any, logs: bool = False, wait: bool = True) -> dict[str, Any]:
    """launch(cfg) against a fresh sandbox; the outcome as a dict, with the job record when one was created."""
    from dataclasses import replace

    from convlab.launch_job import LaunchResult, launch

    cfg = replace(cfg, role=cfg.role or LAB_ROLE, bucket=SANDBOX_BUCKET, local_container=False)
    with sandbox_session(cfg.region, cfg.work_dir) as (session, sandbox):
        outcome = launch(cfg, session=session, logs=logs, wait=wait)
        document = outcome.as_dict()
        if isinstance(outcome, LaunchResult) or getattr(outcome, "created", False):
            document["job_record"] = job_record(session, outcome.job_name)
        document["sandbox"] = {"endpoint_url": sandbox.endpoint_url,
                               "note": "the embedded AWS stopped with this command: nothing was created in "
                                       "AWS and nothing remains to clean up; its jobs train nothing"}
    return document
