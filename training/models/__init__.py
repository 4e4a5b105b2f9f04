"""Model specs: the config dataclass and the Keras builders.

The builders import Keras; they load on first use so that checking a config stays fast.
"""
from .config import ConfigError, ModelConfig, receptive_field, receptive_fields

__all__ = ["ConfigError", "ModelConfig", "build_model", "model_summary", "receptive_field", "receptive_fields"]


def __getattr__(name):
    if name in ("build_model", "model_summary"):
        from . import builder

        return getattr(builder, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
