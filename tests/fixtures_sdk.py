"""SageMaker SDK v3 against the moto server: the harness pieces the SDK needs there.

    drop_empty_dicts   boto3 after-call hook: moto answers some optional structures as {}
                       (VpcConfig={} ...), which sagemaker-core's pydantic shapes reject; a
                       real AWS answer leaves them out. Installed by the harness, never by
                       product code.
    sdk_session        function: a SageMaker Session on the moto server (hook installed, default
                       bucket TEST_BUCKET: without one the SDK asks the real STS for the account).
    wire_requests      function: record(boto_session, "CreateTrainingJob") -> the JSON bodies of
                       those requests as they were sent over HTTP (moto's DescribeTrainingJob
                       answers its own MetricDefinitions, so what was sent is read off the wire).
    kernel_environ     function: environment variables for a notebook kernel (a separate process)
                       on the moto server, with the hook installed by an IPython startup file.
    model_archive      session: model.tar.gz of `trained_model_dir`, a real trained CNN.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from convlab.launch_sandbox import drop_empty_dicts  # the sandbox's own after-call hook, shared by the tests

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_BUCKET = "convlab-tests"
LAB_ROLE = "arn:aws:iam::123456789012:role/LabRole"

KERNEL_STARTUP = '''\
import botocore.handlers

from tests.fixtures_sdk import drop_empty_dicts

botocore.handlers.BUILTIN_HANDLERS.append(("after-call.sagemaker", drop_empty_dicts))
'''


def install_hook(boto_session: Any) -> Any:
    boto_session.events.register("after-call.sagemaker", drop_empty_dicts)
    return boto_session


@pytest.fixture
def sdk_session(aws, monkeypatch) -> Any:
    """A SageMaker Session on a freshly reset moto server, default bucket TEST_BUCKET."""
    import boto3
    from sagemaker.core.helper.session_helper import Session

    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")
    monkeypatch.delenv("SAGEMAKER_ROLE_ARN", raising=False)
    boto_session = install_hook(boto3.Session(region_name=aws.region))
    return Session(boto_session=boto_session, default_bucket=TEST_BUCKET)


@pytest.fixture
def wire_requests() -> Iterator[Callable[..., list[dict]]]:
    registered: list[tuple[Any, str, Callable]] = []

    def record(boto_session: Any, *operations: str) -> list[dict]:
        bodies: list[dict] = []

        def on_send(request: Any, **_: Any) -> None:
            body = request.body.decode() if isinstance(request.body, bytes) else request.body
            bodies.append(json.loads(body or "{}"))

        for operation in operations:
            event = f"before-send.sagemaker.{operation}"
            boto_session.events.register(event, on_send)
            registered.append((boto_session, event, on_send))
        return bodies

    yield record
    for boto_session, event, handler in registered:
        boto_session.events.unregister(event, handler)


@pytest.fixture
def kernel_environ(aws, tmp_path) -> dict[str, str]:
    """os.environ for a kernel: the moto server, dummy credentials, no role validation, the hook."""
    startup = tmp_path / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-sdk-harness.py").write_text(KERNEL_STARTUP)
    env = dict(os.environ)
    env.update(aws.environ())
    env.update({
        "IPYTHONDIR": str(tmp_path / "ipython"),
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p),
        "SAGEMAKER_VALIDATE_ROLE": "false",
        "SAGEMAKER_ROLE_ARN": LAB_ROLE,
        "CONVLAB_BUCKET": TEST_BUCKET,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    })
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"):
        env.pop(name, None)
    return env


@pytest.fixture(scope="session")
def model_archive(trained_model_dir, tmp_path_factory) -> Path:
    from deploy.package import build_archive

    return build_archive(trained_model_dir, tmp_path_factory.mktemp("archive") / "model.tar.gz")
