"""Typed errors raised by deploy; each message names the file, field or resource at fault."""
from __future__ import annotations


class DeployError(Exception):
    """Base class: a deploy step cannot continue, for a reason the user can fix."""


class PackageError(DeployError):
    """A model_dir or model.tar.gz lacks a required member or has it in the wrong place."""


class UnsafeArchiveError(PackageError):
    """An archive member would escape the extraction folder or is not a plain file or folder."""


class ImageUriError(DeployError):
    """No serving image URI could be given or resolved."""


class RegistrationError(DeployError):
    """A SageMaker model or model package exists under the same name with different contents."""


class AwsCallError(DeployError):
    """An AWS call failed for a reason that is not a refusal (bad argument, missing bucket...)."""

    def __init__(self, operation: str, code: str, message: str) -> None:
        super().__init__(f"{operation} failed: {code}: {message}")
        self.operation = operation
        self.code = code
        self.message = message


class Refusal(DeployError):
    """The account refused a step or it is not available here: the chain falls back.

    `code` is the AWS error code (AccessDeniedException, ResourceLimitExceeded, ...) or the
    status a waiter ended in (Failed); `message` is AWS's message, verbatim.
    """

    def __init__(self, operation: str, code: str, message: str) -> None:
        super().__init__(f"{operation} refused: {code}: {message}")
        self.operation = operation
        self.code = code
        self.message = message

    def as_record(self) -> dict[str, str]:
        return {"operation": self.operation, "error_code": self.code, "message": self.message}


class TransformError(DeployError):
    """The local batch transform cannot run (no handler, no inputs, unreadable prefix)."""


class SandboxError(DeployError):
    """The embedded AWS sandbox could not start or was asked for something it cannot do."""


class StepFailed(DeployError):
    """A serving step's resource ended badly (Failed, timed out, outputs missing): the chain stops.

    `reason` is AWS's FailureReason (or what was measured), `next_step` what to do about it, and
    `details` the numbers that go into the deploy result (inputs, outputs, missing keys...).
    """

    def __init__(self, resource: str, status: str, reason: str, next_step: str,
                 details: dict | None = None) -> None:
        super().__init__(f"{resource} ended {status}: {reason}; next: {next_step}")
        self.resource = resource
        self.status = status
        self.reason = reason
        self.next_step = next_step
        self.details = details or {}

    def as_record(self) -> dict:
        return {"resource": self.resource, "status": self.status, "reason": self.reason,
                "next_step": self.next_step, **self.details}
