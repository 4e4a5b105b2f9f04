"""Inside the sandbox's moto server: per-port policies that refuse operations or fail what they
create, hooked into moto's SageMaker and SageMaker Runtime dispatch (deploy.sandbox drives them)."""
from __future__ import annotations

import json
import logging
import re
import threading
from typing import Any, Callable

from deploy.errors import SandboxError
from deploy.moto_hooks import action_of, cache_module_listing, json_error, sagemaker_backend, wrap_dispatch

log = logging.getLogger(__name__)

LAB_PRINCIPAL = "arn:aws:sts::{account}:assumed-role/LabRole/SageMaker"
LAB_DENY_MESSAGE = ("User: {principal} is not authorized to perform: {action} on resource: "
                    "{resource} with an explicit deny in an identity-based policy")
_VERBS = ("Create", "Delete", "Describe", "Update", "Stop", "Start", "List", "Invoke", "Add")

LOCK = threading.Lock()
# port -> {"sagemaker:Action": (error code, message or None for the lab's explicit-deny message)}
POLICIES: dict[int, dict[str, tuple[str, str | None, int | None]]] = {}
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
    action = f"sagemaker:{action_of(response)}"
    if action not in failures:
        return
    field_name, collection, status = FAILABLE[action]
    backend = sagemaker_backend(response)
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
    action = f"sagemaker:{action_of(response)}"
    if action not in policy:
        return None
    params = _params(response)
    account, region = response.current_account, response.region
    code, message, status = policy[action]
    message = message or lab_deny_message(
        action, _resource_arn(action, params, response.parsed_url.path, account, region), account)
    log.info("sandbox refused %s with %s", action, code)
    return json_error(code, message, status)


def _not_implemented(response: Any) -> tuple[int, dict[str, str], str]:
    """moto lacks the operation: answer an AWS-shaped error, not an HTML 500 page."""
    operation = action_of(response)
    body = json.dumps({"__type": "NotImplemented",
                       "message": f"the sandbox (moto) does not implement {operation}"})
    return 501, {"Content-Type": "application/x-amz-json-1.1", "X-Amzn-ErrorType": "NotImplemented"}, body


def _dispatch(response: Any, original: Callable[[Any], Any]) -> Any:
    refused = _refusal(response)
    if refused:
        return refused
    try:
        answer = original(response)
    except NotImplementedError:
        return _not_implemented(response)
    _fail_created(response)
    return answer


def install_hooks() -> None:
    """Once per process: route moto's SageMaker and SageMaker Runtime dispatch through the
    policies, and have moto's server list its service packages once (deploy.moto_hooks)."""
    global _installed
    with LOCK:
        if _installed:
            return
        cache_module_listing()
        wrap_dispatch(_dispatch)
        _installed = True
