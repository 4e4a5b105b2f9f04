"""The request context handed to the handler functions, as the inference toolkit offers one.

A handler function may take the context as a trailing positional argument (the toolkit's rule:
one parameter more than the contract) or as a `context` keyword; functions that take neither are
called with the contract's arguments only. The context carries the request's Content-Type and
Accept, its X-Amzn-SageMaker-Custom-Attributes, the model model_fn returned, and the headers the
handler answers with (`set_response_header`, or `response_custom_attributes`).

While a handler function runs, `current()` returns its context too, so convlab's input_fn and
output_fn find the model's preprocessing and the request's records when a user's override calls
them without passing the context on.
"""
from __future__ import annotations

import contextvars
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
MAX_CUSTOM_ATTRIBUTES = 1024  # SageMaker: at most 1024 visible US-ASCII characters

_current: contextvars.ContextVar = contextvars.ContextVar("convlab_request_context", default=None)


@dataclass
class RequestContext:
    request_content_type: str | None = None
    accept_header: str | None = None
    custom_attributes: str | None = None
    model: Any = None
    content_length: int = 0
    request_headers: dict = field(default_factory=dict)
    response_headers: dict = field(default_factory=dict)
    record_sizes: list | None = None  # images per input record (JSON Lines), set by input_fn
    input_report: dict | None = None  # what the decoding did (photo mapping, scaling), set by input_fn

    # The model server context's accessors (request index 0: one request per context).
    def get_request_header(self, idx: int, key: str) -> str | None:
        key = key.lower()
        if key == CUSTOM_ATTRIBUTES.lower():
            return self.custom_attributes
        return next((v for k, v in self.request_headers.items() if k.lower() == key), None)

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        self.response_headers[key] = value

    @property
    def response_custom_attributes(self) -> str | None:
        return self.response_headers.get(CUSTOM_ATTRIBUTES)

    @response_custom_attributes.setter
    def response_custom_attributes(self, value: str | None) -> None:
        if value is None:
            self.response_headers.pop(CUSTOM_ATTRIBUTES, None)
        else:
            self.response_headers[CUSTOM_ATTRIBUTES] = value

    @property
    def preprocessing(self):
        return getattr(self.model, "preprocessing", None)

    def answer_headers(self) -> dict:
        """The response headers the handler set that may go back to the client: the custom
        attributes, when they are visible ASCII of at most 1024 characters."""
        value = self.response_custom_attributes
        if value is None:
            return {}
        value = str(value)
        if len(value) > MAX_CUSTOM_ATTRIBUTES or not all(32 <= ord(c) < 127 for c in value):
            raise ValueError(f"{CUSTOM_ATTRIBUTES} answer of {len(value)} characters: expected at most "
                             f"{MAX_CUSTOM_ATTRIBUTES} visible US-ASCII characters")
        return {CUSTOM_ATTRIBUTES: value}


def batch_context(contexts: list, model=None) -> RequestContext | None:
    """The context of one predict_fn call for several requests: the model, and the content type,
    Accept and custom attributes the requests share (None where they differ); one request's own
    context when there is one."""
    if len(contexts) == 1:
        return contexts[0]

    def shared(name: str):
        value = getattr(contexts[0], name, None)
        return value if all(getattr(c, name, None) == value for c in contexts[1:]) else None

    if all(c is None for c in contexts):
        return None
    return RequestContext(shared("request_content_type"), shared("accept_header"), shared("custom_attributes"),
                          model=model if model is not None else shared("model"))


def current() -> RequestContext | None:
    """The context of the handler call running in this thread or task, if any."""
    return _current.get()


def parse_custom_attributes(value: str | None) -> dict[str, str]:
    """`key=value` pairs separated by `;` or `,`; pieces without `=` are ignored."""
    pairs = {}
    for piece in (value or "").replace(";", ",").split(","):
        key, sep, item = piece.partition("=")
        if sep and key.strip():
            pairs[key.strip()] = item.strip()
    return pairs


def context_mode(function: Callable, contract_args: int) -> str | None:
    """How `function` takes the context: "keyword", "positional", or None (it does not)."""
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.name == "context" and p.kind != p.POSITIONAL_ONLY for p in parameters):
        return "keyword"
    if any(p.kind == p.VAR_KEYWORD for p in parameters):
        return "keyword"
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) == contract_args + 1:
        return "positional"
    return None


def call(function: Callable, args: tuple, context: RequestContext | None, mode: str | None):
    """Run a handler function with its contract arguments, the context as it takes it, and
    `current()` set to the context while it runs."""
    token = _current.set(context)
    try:
        if context is not None and mode == "keyword":
            return function(*args, context=context)
        if context is not None and mode == "positional":
            return function(*args, context)
        return function(*args)
    finally:
        _current.reset(token)
