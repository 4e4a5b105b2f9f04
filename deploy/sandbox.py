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
import re
import threading
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable

from deploy.errors import SandboxError

log = logging.getLogger(__name__)

LAB_PRINCIPAL = "arn:aws:sts::{account}:assumed-role/LabRole/SageMaker"
LAB_DENY_MESSAGE = ("User: {principal} is not authorized to perform: {action} on resource: "
                    "{resource} with an explicit deny in an identity-based policy")
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
_VERBS = ("Create", "Delete", "Describe", "Update", "Stop", "Start", "List", "Invoke", "Add")

_lock = threading.Lock()
# port -> {"sagemaker:Action": (error code, message or None for the lab's explicit-deny message)}
_policies: dict[int, dict[str, tuple[str, str | None]]] = {}
# port -> {"sagemaker:CreateEndpoint": (status, FailureReason)}: what that call creates ends so
_failures: dict[int, dict[str, tuple[str, str]]] = {}
# operation -> (name parameter, moto backend collection, status attribute)
FAILABLE = {"sagemaker:CreateEndpoint": ("EndpointName", "endpoints", "endpoint_status"),
            "sagemaker:CreateTransformJob": ("TransformJobName", "transform_jobs", "transform_job_status")}
_installed = False


def _known_actions() -> set[str]:
    import botocore.session
    session = botocore.session.get_session()
    actions: set[str] = set()
    for service in ("sagemaker", "sagemaker-runtime"):
        actions.update(session.get_service_model(service).operation_names)
    return actions


def normalize_action(action: str) -> str:
    """"CreateEndpointConfig" or "sagemaker:CreateEndpointConfig" -> "sagemaker:CreateEndpointConfig"."""
    name = action.split(":", 1)[1] if action.startswith("sagemaker:") else action
    if name not in _known_actions():
        raise SandboxError(f"cannot deny {action!r}: not a SageMaker or SageMaker Runtime "
                           "operation name (expected e.g. CreateEndpointConfig, CreateTransformJob)")
    return f"sagemaker:{name}"


def _resource_arn(action: str, params: dict[str, Any], path: str, account: str, region: str) -> str:
    """The ARN IAM would name for `action` on the resource in this request."""
    name = action.split(":", 1)[1]
    noun = next((name[len(v):] for v in _VERBS if name.startswith(v)), name)
    if name == "InvokeEndpoint" or name == "InvokeEndpointAsync":
        noun = "Endpoint"
        match = re.search(r"/endpoints/([^/]+)/", path)
        value = match.group(1) if match else None
    else:
        value = params.get(f"{noun}Name")
    kind = re.sub(r"(?<!^)(?=[A-Z])", "-", noun).lower()
    if not value:
        return f"arn:aws:sagemaker:{region}:{account}:{kind}/*"
    return f"arn:aws:sagemaker:{region}:{account}:{kind}/{str(value).lower()}"


def lab_deny_message(action: str, resource_arn: str, account: str = "123456789012") -> str:
    """The message a lab account's explicit deny gives for `action` on `resource_arn`."""
    return LAB_DENY_MESSAGE.format(principal=LAB_PRINCIPAL.format(account=account),
                                   action=action, resource=resource_arn)


def _port(response: Any) -> int:
    host = str(response.headers.get("Host") or "")
    return int(host.rsplit(":", 1)[1]) if ":" in host else 80


def _params(response: Any) -> dict[str, Any]:
    try:
        params = json.loads(response.body) if response.body else {}
    except (TypeError, ValueError):
        params = {}
    return params if isinstance(params, dict) else {}


def _fail_created(response: Any) -> None:
    """After a Create* this server was told to fail: mark what it created Failed, with the reason."""
    with _lock:
        failures = dict(_failures.get(_port(response), {}))
    action = f"sagemaker:{response._get_action()}"
    if action not in failures:
        return
    from moto.sagemaker.models import sagemaker_backends
    field_name, collection, status = FAILABLE[action]
    backend = sagemaker_backends[response.current_account][response.region]
    created = getattr(backend, collection).get(_params(response).get(field_name))
    if created is not None:
        setattr(created, status, failures[action][0])
        created.failure_reason = failures[action][1]
        log.info("sandbox set what %s created to %s: %s", action, *failures[action])


def _refusal(response: Any) -> tuple[int, dict[str, str], str] | None:
    with _lock:
        policy = dict(_policies.get(_port(response), {}))
    if not policy:
        return None
    action = f"sagemaker:{response._get_action()}"
    if action not in policy:
        return None
    from moto.core.exceptions import JsonRESTError
    params = _params(response)
    account, region = response.current_account, response.region
    code, message = policy[action]
    message = message or lab_deny_message(
        action, _resource_arn(action, params, response.parsed_url.path, account, region), account)
    error = JsonRESTError(code, message)
    log.info("sandbox refused %s with %s", action, code)
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amzn-ErrorType": code}
    return error.code, headers, error.get_body()


def _not_implemented(response: Any) -> tuple[int, dict[str, str], str]:
    """moto lacks the operation: answer an AWS-shaped error, not an HTML 500 page."""
    operation = response._get_action()
    body = json.dumps({"__type": "NotImplemented",
                       "message": f"the sandbox (moto) does not implement {operation}"})
    return 501, {"Content-Type": "application/x-amz-json-1.1", "X-Amzn-ErrorType": "NotImplemented"}, body


def _install_hooks() -> None:
    """Once per process: wrap moto's SageMaker and SageMaker Runtime dispatch so a policy can
    refuse calls, and list moto's service packages once instead of on every request (moto's
    server lists its package folder per request to route it: half of an S3 GET's server time)."""
    global _installed
    with _lock:
        if _installed:
            return
        from moto import backends
        modules = tuple(backends.list_of_moto_modules())
        backends.list_of_moto_modules = lambda: modules  # type: ignore[assignment]
        from moto.sagemaker.responses import SageMakerResponse
        from moto.sagemakerruntime.responses import SageMakerRuntimeResponse
        for cls in (SageMakerResponse, SageMakerRuntimeResponse):
            original: Callable[..., Any] = cls.call_action

            def call_action(self: Any, _original: Callable[..., Any] = original) -> Any:
                refused = _refusal(self)
                if refused:
                    return refused
                try:
                    answer = _original(self)
                except NotImplementedError:
                    return _not_implemented(self)
                _fail_created(self)
                return answer

            cls.call_action = call_action  # type: ignore[method-assign]
        _installed = True


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
             code: str = "AccessDeniedException") -> Denial:
        """Refuse `actions` with `code` (default AccessDeniedException) and `message` (default:
        the lab account's explicit-deny message), as the account's policy or quota would."""
        if not actions:
            raise SandboxError("deny() needs at least one operation name, e.g. CreateEndpointConfig")
        names = tuple(normalize_action(a) for a in actions)
        with _lock:
            policy = _policies.setdefault(self.port, {})
            for name in names:
                policy[name] = (code, message)
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
        with _lock:
            _failures.setdefault(self.port, {})[name] = (status, reason)
        return Denial(self, (name,))

    def allow(self, *actions: str) -> None:
        """Undo denials and failures of `actions`."""
        with _lock:
            policy, failures = _policies.get(self.port, {}), _failures.get(self.port, {})
            for action in actions:
                policy.pop(normalize_action(action), None)
                failures.pop(normalize_action(action), None)

    def allow_all(self) -> None:
        with _lock:
            _policies.pop(self.port, None)
            _failures.pop(self.port, None)

    def denied(self) -> list[str]:
        with _lock:
            return sorted(_policies.get(self.port, {}))

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
    _install_hooks()
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
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sandbox = start_sandbox(args.host, args.port, args.region)
    denied = [a.strip() for a in args.deny.split(",") if a.strip()]
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
