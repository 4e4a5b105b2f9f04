"""Model specs: the config dataclass and the Keras builders."""
from .builder import build_model, model_summary, receptive_field
from .config import ConfigError, ModelConfig

__all__ = ["ConfigError", "ModelConfig", "build_model", "model_summary", "receptive_field"]
