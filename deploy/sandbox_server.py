"""Inside the sandbox's moto server: per-port policies that refuse operations or fail what they
create, hooked into moto's SageMaker and SageMaker Runtime dispatch (deploy.sandbox drives them)."""
from __future__ import annotations

import json
import logging
import re
import threading
from typing import Any, Callable

from deploy.errors import SandboxError

log = logging.getLogger(__name__)

LAB_PRINCIPAL = "arn:aws:sts::{account}:assumed-role/LabRole/SageMaker"
LAB_DENY_MESSAGE = ("User: {principal} is not authorized to perform: {action} on resource: "
                    "{resource} with an explicit deny in an identity-based policy")
_VERBS = ("Create", "Delete", "Describe", "Update", "Stop", "Start", "List", "Invoke", "Add")

LOCK = threading.Lock()
# port -> {"sagemaker:Action": (error code, message or None for the lab's explicit-deny message)}
POLICIES: dict[int, dict[str, tuple[str, str | None]]] = {}
# port -> {"sagemaker:CreateEndpoint": (status, FailureReason)}: what that call creates ends so
FAILURES: dict[int, dict[str, tuple[str, str]]] = {}
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
    import difflib

    name = action.split(":", 1)[1] if action.startswith("sagemaker:") else action
    known = _known_actions()
    if name not in known:
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}?" if close else "expected e.g. CreateEndpointConfig, CreateTransformJob"
        raise SandboxError(f"cannot deny {action!r}: not a SageMaker or SageMaker Runtime operation name; {hint}")
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
    with LOCK:
        failures = dict(FAILURES.get(_port(response), {}))
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
    with LOCK:
        policy = dict(POLICIES.get(_port(response), {}))
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


def install_hooks() -> None:
    """Once per process: wrap moto's SageMaker and SageMaker Runtime dispatch so a policy can
    refuse calls, and list moto's service packages once instead of on every request (moto's
    server lists its package folder per request to route it: half of an S3 GET's server time)."""
    global _installed
    with LOCK:
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
