"""The one place convlab reaches into moto's server internals; deploy/sandbox_server.py holds the
policies and uses only what is here.

moto has no supported way to make its server refuse one operation with a chosen error, to fail
what a call created, or to stop listing its package folder on every request (half of an S3 GET's
server time), so these wrap moto's own dispatch. They are known to hold for the versions setup.py
allows (moto[server]>=5.2.5,<5.3); `check_moto()` fails with one clear line when moto moves
under them, and tests/test_moto_hooks.py runs it.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

from deploy.errors import SandboxError

SUPPORTED = ((5, 2), (5, 3))  # [lower, upper) of moto's major.minor

# what is used -> its expected parameters
EXPECTED = {
    "moto.core.responses.BaseResponse.call_action": ["self"],
    "moto.core.responses.BaseResponse._get_action": ["self"],
    "moto.backends.list_of_moto_modules": [],
    "moto.core.exceptions.JsonRESTError.__init__": ["self", "error_type", "message", "_", "kwargs"],
}
DISPATCH_CLASSES = ("moto.sagemaker.responses.SageMakerResponse",
                    "moto.sagemakerruntime.responses.SageMakerRuntimeResponse")


def _resolve(path: str) -> Any:
    import importlib

    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            target = getattr(target, name)
        return target
    raise ImportError(path)


def check_moto() -> str:
    """moto's version when every internal used here is where it was, else a SandboxError naming it."""
    import moto

    version = tuple(int(p) for p in moto.__version__.split(".")[:2])
    if not SUPPORTED[0] <= version < SUPPORTED[1]:
        raise SandboxError(f"moto {moto.__version__} is installed; the sandbox's hooks are known to hold for "
                           "moto>=5.2.5,<5.3 (pip install 'moto[server]>=5.2.5,<5.3')")
    for path, parameters in EXPECTED.items():
        try:
            found = list(inspect.signature(_resolve(path)).parameters)
        except (ImportError, AttributeError):
            raise SandboxError(f"moto {moto.__version__} has no {path}, which the sandbox hooks") from None
        if found != parameters:
            raise SandboxError(f"moto {moto.__version__}: {path} takes {found}; the sandbox expects {parameters}")
    for path in DISPATCH_CLASSES:
        try:
            _resolve(path)
        except (ImportError, AttributeError):
            raise SandboxError(f"moto {moto.__version__} has no {path}, whose dispatch the sandbox wraps") from None
    return moto.__version__


def action_of(response: Any) -> str:
    """The operation name ("CreateEndpoint") of the request a moto response object handles."""
    return str(response._get_action())


def sagemaker_backend(response: Any) -> Any:
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends[response.current_account][response.region]


def json_error(code: str, message: str, status: int | None = None) -> tuple[int, dict[str, str], str]:
    """An AWS JSON-protocol error as moto answers it: (status, headers, body); `status` replaces
    moto's 400."""
    from moto.core.exceptions import JsonRESTError

    error = JsonRESTError(code, message)
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amzn-ErrorType": code}
    return status or error.code, headers, error.get_body()


def cache_module_listing() -> None:
    """moto's server lists its package folder on every request to route it: list it once."""
    from moto import backends

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules  # type: ignore[assignment]


def wrap_dispatch(around: Callable[[Any, Callable[[Any], Any]], Any]) -> None:
    """Route every SageMaker and SageMaker Runtime request through `around(response, dispatch)`."""
    check_moto()
    for path in DISPATCH_CLASSES:
        cls = _resolve(path)
        original: Callable[[Any], Any] = cls.call_action

        def call_action(self: Any, _original: Callable[[Any], Any] = original) -> Any:
            return around(self, _original)

        cls.call_action = call_action
