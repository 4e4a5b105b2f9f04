"""How a batch transform turns input objects into requests and responses into `.out` objects,
with SageMaker's TransformInput / TransformOutput semantics.

SplitType None: the whole object is one request. SplitType Line: the object is split on newlines
into records (CSV rows, JSON Lines records; blank lines are skipped), sent one per request
(BatchStrategy SingleRecord) or packed into requests of at most MaxPayloadInMB (MultiRecord).
AssembleWith None: the responses for one object are concatenated as they are; Line: each response
ends with a newline (added unless it already ends with one), so with Accept text/csv or
application/jsonlines the `.out` holds one line per input record, in order.
"""
from __future__ import annotations

from dataclasses import dataclass

from deploy.errors import TransformError

SPLIT_TYPES = ("None", "Line")
BATCH_STRATEGIES = ("SingleRecord", "MultiRecord")
ASSEMBLE_WITH = ("None", "Line")
DEFAULT_PAYLOAD_MB = 6.0
_STRATEGY_NAMES = {"singlerecord": "SingleRecord", "single_record": "SingleRecord",
                   "multirecord": "MultiRecord", "multi_record": "MultiRecord"}


class PayloadTooLarge(Exception):
    """A record (or a whole object with SplitType None) is larger than MaxPayloadInMB."""


def batch_strategy_name(value: str | None, what: str = "BatchStrategy") -> str | None:
    """SingleRecord / MultiRecord from either spelling (the API's or the container's SINGLE_RECORD)."""
    if value is None or value == "":
        return None
    name = _STRATEGY_NAMES.get(value.strip().lower())
    if name is None:
        raise TransformError(f"{what} {value!r}: expected SingleRecord or MultiRecord")
    return name


@dataclass
class TransformOptions:
    """A transform job's TransformInput/TransformOutput settings; None means: ask the container's
    /execution-parameters (over HTTP), else SageMaker's default."""

    split_type: str = "None"
    batch_strategy: str | None = None
    assemble_with: str = "None"
    max_payload_mb: float | None = None
    max_concurrent_transforms: int | None = None
    content_type: str | None = None
    accept: str = "application/json"

    def __post_init__(self) -> None:
        self.batch_strategy = batch_strategy_name(self.batch_strategy)
        for name, value, allowed in (("SplitType", self.split_type, SPLIT_TYPES),
                                     ("AssembleWith", self.assemble_with, ASSEMBLE_WITH)):
            if value not in allowed:
                raise TransformError(f"{name} {value!r}: expected one of {', '.join(allowed)}")
        if self.max_payload_mb is not None and self.max_payload_mb <= 0:
            raise TransformError(f"MaxPayloadInMB {self.max_payload_mb:g}: expected a positive number")
        if self.max_concurrent_transforms is not None and self.max_concurrent_transforms < 1:
            raise TransformError(f"MaxConcurrentTransforms {self.max_concurrent_transforms}: expected 1 or more")

    def resolved(self, parameters: dict | None) -> "TransformOptions":
        """These options with the unset ones taken from /execution-parameters, else the defaults
        (MultiRecord, 6 MB, 1 request at a time)."""
        parameters = parameters or {}
        return TransformOptions(
            split_type=self.split_type, assemble_with=self.assemble_with,
            batch_strategy=self.batch_strategy or batch_strategy_name(parameters.get("BatchStrategy"),
                                                                     "/execution-parameters BatchStrategy")
            or "MultiRecord",
            max_payload_mb=self.max_payload_mb or float(parameters.get("MaxPayloadInMB") or DEFAULT_PAYLOAD_MB),
            max_concurrent_transforms=self.max_concurrent_transforms
            or int(parameters.get("MaxConcurrentTransforms") or 1),
            content_type=self.content_type, accept=self.accept)

    @property
    def payload_bytes(self) -> int:
        return int((self.max_payload_mb or DEFAULT_PAYLOAD_MB) * 1024 * 1024)


def split_requests(body: bytes, options: TransformOptions) -> list[bytes]:
    """The request bodies for one object, in order."""
    limit = options.payload_bytes
    if options.split_type == "None":
        if len(body) > limit:
            raise PayloadTooLarge(f"the object is {len(body)} bytes, over MaxPayloadInMB "
                                  f"({options.max_payload_mb or DEFAULT_PAYLOAD_MB:g} MB); split it with "
                                  "SplitType Line or raise MaxPayloadInMB")
        return [body]
    records = [line for line in body.splitlines() if line.strip()]
    for number, record in enumerate(records, start=1):
        if len(record) > limit:
            raise PayloadTooLarge(f"record {number} is {len(record)} bytes, over MaxPayloadInMB "
                                  f"({options.max_payload_mb or DEFAULT_PAYLOAD_MB:g} MB)")
    if options.batch_strategy == "SingleRecord":
        return records
    requests, current, size = [], [], 0
    for record in records:
        if current and size + len(record) + 1 > limit:
            requests.append(b"\n".join(current))
            current, size = [], 0
        current.append(record)
        size += len(record) + 1
    if current:
        requests.append(b"\n".join(current))
    return requests


def assemble(responses: list[bytes], assemble_with: str) -> bytes:
    """The `.out` body for one object from its responses, in request order."""
    if assemble_with == "None":
        return b"".join(responses)
    return b"".join(body if body.endswith(b"\n") else body + b"\n" for body in responses)
