"""The four handler functions the server runs: convlab's, each replaced by the user's
<model_dir>/code/inference.py when that module defines it (the inference toolkit's rule).

A user module that fails to import stops the server at start with its traceback: there is no
silent fallback to the defaults. input_fn, predict_fn and output_fn may take the request context
(context.py) as a trailing argument or a `context` keyword; the 4-function contract works as is.
The server and the local batch transform both run the handler through this module, so they
answer alike.
"""
from __future__ import annotations

import importlib.util
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import context as request_context
from . import handler as builtin
from .responses import response_of

log = logging.getLogger("convlab.serve")

FUNCTIONS = ("model_fn", "input_fn", "predict_fn", "output_fn")
USER_MODULE_NAME = "convlab_user_inference"


class UserModuleError(RuntimeError):
    """code/inference.py exists but could not be imported."""


@dataclass
class Handler:
    model_fn: Callable
    input_fn: Callable
    predict_fn: Callable
    output_fn: Callable
    sources: dict = field(default_factory=dict)
    convlab_copy: bool = False  # code/inference.py is convlab's own handler (code_bundle.py)
    context_modes: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.context_modes = {"input_fn": request_context.context_mode(self.input_fn, 2),
                              "predict_fn": request_context.context_mode(self.predict_fn, 2),
                              "output_fn": request_context.context_mode(self.output_fn, 2)}

    def run_input(self, body, content_type, context=None):
        return request_context.call(self.input_fn, (body, content_type), context, self.context_modes["input_fn"])

    def run_predict(self, data, model, context=None):
        return request_context.call(self.predict_fn, (data, model), context, self.context_modes["predict_fn"])

    def run_output(self, prediction, accept, context=None):
        return request_context.call(self.output_fn, (prediction, accept), context, self.context_modes["output_fn"])

    def respond(self, prediction, accept, context=None) -> tuple[bytes, str]:
        """output_fn's answer as (body bytes, content type), by the toolkit's rule (responses.py)."""
        return response_of(self.run_output(prediction, accept, context), accept)

    @property
    def builtin_input(self) -> bool:
        return self.input_fn is builtin.input_fn

    @property
    def builtin_output(self) -> bool:
        return self.output_fn is builtin.output_fn

    @property
    def all_convlab(self) -> bool:
        """All four functions are convlab's: built in, or a copy shipped in code/ that overrides nothing."""
        overridden = [name for name, source in self.sources.items() if source != "convlab"]
        return not overridden or (self.convlab_copy and len(overridden) == len(FUNCTIONS))

    @property
    def row_wise(self) -> bool:
        """True when predict_fn declares that each output row depends on its input row only, so
        requests may be batched together on the way to the model."""
        return bool(getattr(self.predict_fn, "row_wise", False)) and self.context_modes["predict_fn"] is None

    @property
    def per_row_outputs(self) -> tuple | None:
        """The keys of a row-wise predict_fn's dict answer that hold one row per input image
        (predict_fn.per_row_outputs); the batcher splits those and nothing else."""
        keys = getattr(self.predict_fn, "per_row_outputs", None)
        return (keys,) if isinstance(keys, str) else tuple(keys) if keys else None


def user_module_path(model_dir) -> Path:
    return Path(model_dir) / "code" / "inference.py"


def import_user_module(path: Path):
    """Import code/inference.py under its own name, with code/ on sys.path for its siblings.

    code/ goes at the end of sys.path: first, its inference.py would shadow this package (in
    worker processes, which inherit sys.path)."""
    code_dir = str(path.parent)
    if code_dir not in sys.path:
        sys.path.append(code_dir)
    spec = importlib.util.spec_from_file_location(USER_MODULE_NAME, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[USER_MODULE_NAME] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        sys.modules.pop(USER_MODULE_NAME, None)
        raise UserModuleError(f"{path}: failed to import ({type(exc).__name__}: {exc}); fix or remove it, "
                              "the server does not fall back to the default handler") from exc
    return module


def load_handler(model_dir) -> Handler:
    functions = {name: getattr(builtin, name) for name in FUNCTIONS}
    sources = {name: "convlab" for name in FUNCTIONS}
    path = user_module_path(model_dir)
    convlab_copy = False
    if path.is_file():
        module = import_user_module(path)
        for name in FUNCTIONS:
            function = getattr(module, name, None)
            if function is None:
                continue
            if not callable(function):
                raise UserModuleError(f"{path}: {name} is a {type(function).__name__}, expected a function")
            functions[name] = function
            sources[name] = str(path)
        overridden = [name for name in FUNCTIONS if sources[name] != "convlab"]
        convlab_copy = bool(getattr(module, "CONVLAB_HANDLER", False))
        kind = "convlab handler copy" if convlab_copy else "user module"
        log.info("%s (%s) provides %s", path, kind, ", ".join(overridden) or "none of the four functions")
    return Handler(**functions, sources=sources, convlab_copy=convlab_copy)
