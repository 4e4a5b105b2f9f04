"""An embedded AWS (moto server on 127.0.0.1) that can refuse operations like a lab account.

AWS Academy / Learner Lab accounts answer, for example,

    User: arn:aws:sts::123456789012:assumed-role/LabRole/SageMaker is not authorized to perform:
    sagemaker:CreateEndpointConfig on resource: arn:aws:sagemaker:us-east-1:123456789012:
    endpoint-config/NAME with an explicit deny in an identity-based policy

`Sandbox.deny("CreateEndpointConfig")` makes this server answer exactly that, as an
AccessDeniedException over HTTP, so boto3 raises the same ClientError it raises in such an account.
The refusal is decided inside the server, per server (by the port a request arrives on).

`Sandbox.fail_created("CreateEndpoint", reason)` makes the endpoint (or transform job) that call
creates end Failed with `reason` as its FailureReason, in the server's own state, as a model that
does not load or a container that exits does in SageMaker: Describe* then answers Failed
(`status="Creating"` instead leaves it creating for ever, for timeouts).
"""
from __future__ import annotations

import json
import logging
import sys
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from deploy.errors import SandboxError
from deploy.sandbox_server import (FAILABLE, FAILURES, LOCK, POLICIES, install_hooks,  # noqa: F401
                                   lab_deny_message, normalize_action)

log = logging.getLogger(__name__)

DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@dataclass
class Denial:
    """Operations refused until `undo()` (or the end of a `with` block)."""

    sandbox: "Sandbox"
    actions: tuple[str, ...]
    _done: bool = field(default=False, repr=False)

    def undo(self) -> None:
        if not self._done:
            self.sandbox.allow(*self.actions)
            self._done = True

    def __enter__(self) -> "Denial":
        return self

    def __exit__(self, *exc: object) -> None:
        self.undo()


@dataclass
class Sandbox:
    """A running moto server: S3, SageMaker and SageMaker Runtime at `endpoint_url`."""

    server: Any
    host: str
    port: int
    region: str = "us-east-1"

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def environ(self) -> dict[str, str]:
        """Environment variables that point boto3 (and the SageMaker SDK) at this server."""
        return {"AWS_ENDPOINT_URL": self.endpoint_url, "AWS_DEFAULT_REGION": self.region,
                "AWS_REGION": self.region, "SAGEMAKER_VALIDATE_ROLE": "false", **DUMMY_CREDENTIALS}

    def deny(self, *actions: str, message: str | None = None,
             code: str = "AccessDeniedException", status: int | None = None) -> Denial:
        """Refuse `actions` with `code` (default AccessDeniedException) and `message` (default:
        the lab account's explicit-deny message), as the account's policy or quota would; `status`
        is the HTTP status (default moto's 400)."""
        if not actions:
            raise SandboxError("deny() needs at least one operation name, e.g. CreateEndpointConfig")
        names = tuple(normalize_action(a) for a in actions)
        with LOCK:
            policy = POLICIES.setdefault(self.port, {})
            for name in names:
                policy[name] = (code, message, status)
        log.info("sandbox denies %s", ", ".join(names))
        return Denial(self, names)

    def fail_created(self, action: str, reason: str, status: str = "Failed") -> Denial:
        """What `action` (CreateEndpoint or CreateTransformJob) creates from now on ends Failed
        with FailureReason `reason` (or stays in `status`, e.g. Creating: a wait that times out);
        undone like a denial."""
        name = normalize_action(action)
        if name not in FAILABLE:
            raise SandboxError(f"cannot fail what {action!r} creates: expected one of "
                               f"{', '.join(a.split(':')[1] for a in FAILABLE)}")
        with LOCK:
            FAILURES.setdefault(self.port, {})[name] = (status, reason)
        return Denial(self, (name,))

    def allow(self, *actions: str) -> None:
        """Undo denials and failures of `actions`."""
        with LOCK:
            policy, failures = POLICIES.get(self.port, {}), FAILURES.get(self.port, {})
            for action in actions:
                policy.pop(normalize_action(action), None)
                failures.pop(normalize_action(action), None)

    def allow_all(self) -> None:
        with LOCK:
            POLICIES.pop(self.port, None)
            FAILURES.pop(self.port, None)

    def denied(self) -> list[str]:
        with LOCK:
            return sorted(POLICIES.get(self.port, {}))

    def _post(self, path: str, payload: dict[str, Any] | None = None) -> None:
        data = json.dumps(payload or {}).encode()
        request = urllib.request.Request(self.endpoint_url + path, data=data, method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as reply:
            reply.read()

    def reset(self) -> None:
        """Forget every bucket, model, endpoint and job, and every denial."""
        self._post("/moto-api/reset")
        self.allow_all()

    def queue_endpoint_results(self, results: list[dict[str, str]]) -> None:
        """Answers for the next sagemaker-runtime InvokeEndpoint calls, in order.

        Each result: {"Body": str, "ContentType": str} (moto's endpoint-results API).
        """
        self._post("/moto-api/static/sagemaker/endpoint-results",
                   {"region": self.region, "results": results})

    def stop(self) -> None:
        self.allow_all()
        self.server.stop()


def start_sandbox(host: str = "127.0.0.1", port: int = 0, region: str = "us-east-1") -> Sandbox:
    """Start moto's threaded server in this process; port 0 picks a free port."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        raise SandboxError("the sandbox needs moto's server: pip install 'moto[server]>=5.2.5'") from exc
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    install_hooks()
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    bound_host, bound_port = server.get_host_and_port()
    sandbox = Sandbox(server=server, host=bound_host, port=bound_port, region=region)
    sandbox.allow_all()
    log.info("AWS sandbox listening on %s", sandbox.endpoint_url)
    return sandbox


def main(argv: list[str] | None = None) -> int:
    """`python -m deploy.sandbox [--port N] [--deny Op,...]`: serve until interrupted."""
    import argparse
    import time

    parser = argparse.ArgumentParser(prog="python -m deploy.sandbox", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--deny", default="", help="operations to refuse, comma-separated")
    args = parser.parse_args(argv)
    denied = [a.strip() for a in args.deny.split(",") if a.strip()]
    try:
        for action in denied:  # checked before anything starts listening
            normalize_action(action)
    except SandboxError as exc:
        print(f"{parser.prog}: --deny: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sandbox = start_sandbox(args.host, args.port, args.region)
    if denied:
        sandbox.deny(*denied)
    print(json.dumps({"endpoint_url": sandbox.endpoint_url, "environment": sandbox.environ()}), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
