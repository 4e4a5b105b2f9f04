"""AWS for the tests: one live moto server on 127.0.0.1, reached by boto3 over HTTP.

Fixtures:
    moto_server       session: the running server (.endpoint_url, .deny(), .reset(),
                      .queue_endpoint_results()); the environment points boto3 at it.
    aws               function: the same server with every bucket, model, job and denial
                      forgotten before the test.
    deny_operations   function: deny_operations("CreateEndpointConfig", message=None, code=...)
                      makes the server refuse those operations with AccessDeniedException (or
                      `code`) and the lab account's explicit-deny message (or `message`);
                      undone after the test.
    fail_created      function: fail_created("CreateEndpoint", reason, status="Failed") makes
                      what that call creates end in `status` with FailureReason `reason` in
                      the server's state; undone after the test.

Outside pytest (notebook tests, `make demo`): deploy.sandbox.start_sandbox() gives the same server.
"""
from __future__ import annotations

from typing import Callable, Iterator

import pytest

from deploy.sandbox import Denial, Sandbox, start_sandbox

# Real credentials or profiles in the environment must never reach the tests.
_UNSET = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_DEFAULT_PROFILE",
          "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")


def start_moto(monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    """Start the server and point this process's environment at it through `monkeypatch`."""
    sandbox = start_sandbox()
    for name in _UNSET:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    for name, value in sandbox.environ().items():
        monkeypatch.setenv(name, value)
    return sandbox


@pytest.fixture(scope="session")
def moto_server() -> Iterator[Sandbox]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        sandbox = start_moto(monkeypatch)
        try:
            yield sandbox
        finally:
            sandbox.stop()


@pytest.fixture
def aws(moto_server: Sandbox) -> Sandbox:
    moto_server.reset()
    return moto_server


@pytest.fixture
def deny_operations(moto_server: Sandbox) -> Iterator[Callable[..., Denial]]:
    denials: list[Denial] = []

    def deny(*operations: str, message: str | None = None, code: str = "AccessDeniedException",
             status: int | None = None) -> Denial:
        denial = moto_server.deny(*operations, message=message, code=code, status=status)
        denials.append(denial)
        return denial

    yield deny
    for denial in reversed(denials):
        denial.undo()


@pytest.fixture
def fail_created(moto_server: Sandbox) -> Iterator[Callable[..., Denial]]:
    failures: list[Denial] = []

    def fail(operation: str, reason: str, status: str = "Failed") -> Denial:
        failure = moto_server.fail_created(operation, reason, status)
        failures.append(failure)
        return failure

    yield fail
    for failure in reversed(failures):
        failure.undo()
