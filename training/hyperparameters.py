"""Training hyperparameters: every name the entry point accepts, parsed and checked."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .models.config import ConfigError, ModelConfig, parse_value

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine")
AUGMENTATIONS = ("none", "light")
# Hyperparameters SageMaker and its containers add to a job; they are accepted and ignored.
# sagemaker_* (program, submit_directory, region, job_name, distribution flags, estimator class
# for tuning), _tuning_* (a tuning job's `_tuning_objective_metric`), and sagemaker-training's
# reserved `default_user_module_name`.
IGNORED_PREFIXES = ("sagemaker_", "_tuning_")
IGNORED_NAMES = frozenset({"default_user_module_name"})


def is_reserved(name: str) -> bool:
    """True for a hyperparameter SageMaker or its training toolkit reserves for itself."""
    return name.startswith(IGNORED_PREFIXES) or name in IGNORED_NAMES


@dataclass
class TrainingParams:
    epochs: int = 5
    batch_size: int = 128
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    lr_schedule: str = "constant"
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    seed: int = 42
    validation_fraction: float = 0.1
    test_fraction: float = 0.1
    max_train_samples: int = 0
    max_test_samples: int = 0
    augment: str = "none"
    early_stopping_patience: int = 0
    export_onnx: bool = True
    verbose: int = 2

    KINDS = {
        "epochs": int, "batch_size": int, "learning_rate": float, "optimizer": str, "lr_schedule": str,
        "weight_decay": float, "label_smoothing": float, "seed": int, "validation_fraction": float,
        "test_fraction": float, "max_train_samples": int, "max_test_samples": int, "augment": str,
        "early_stopping_patience": int, "export_onnx": bool, "verbose": int,
    }

    def validate(self) -> "TrainingParams":
        if self.epochs < 1:
            raise ConfigError(f"hyperparameter 'epochs': expected an integer >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"hyperparameter 'batch_size': expected an integer >= 1, got {self.batch_size}")
        if not self.learning_rate > 0:
            raise ConfigError(f"hyperparameter 'learning_rate': expected > 0, got {self.learning_rate}")
        for name, allowed in (("optimizer", OPTIMIZERS), ("lr_schedule", SCHEDULES), ("augment", AUGMENTATIONS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"hyperparameter '{name}': expected one of {allowed}, got {getattr(self, name)!r}")
        for name in ("validation_fraction", "test_fraction"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ConfigError(f"hyperparameter '{name}': expected 0 < value < 1, got {getattr(self, name)}")
        for name in ("max_train_samples", "max_test_samples", "early_stopping_patience", "weight_decay"):
            if getattr(self, name) < 0:
                raise ConfigError(f"hyperparameter '{name}': expected >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"hyperparameter 'label_smoothing': expected 0 <= value < 1, got {self.label_smoothing}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def parse_hyperparameters(raw: dict) -> tuple[TrainingParams, ModelConfig]:
    """Split raw hyperparameters (strings or values) into training params and a model config.

    An unknown name is an error that lists the accepted names, so a typo never goes unnoticed.
    """
    training, model = {}, {}
    for name, value in raw.items():
        key = str(name).replace("-", "_")
        if is_reserved(key):
            continue
        if key in TrainingParams.KINDS:
            training[key] = parse_value(key, value, TrainingParams.KINDS[key])
        elif key in ModelConfig.FIELD_KINDS and key not in ("input_shape", "num_classes"):
            model[key] = value
        else:
            accepted = sorted(set(TrainingParams.KINDS) | set(ModelConfig.FIELD_KINDS) - {"input_shape", "num_classes"})
            raise ConfigError(f"unknown hyperparameter '{name}' (value {value!r}); accepted: {', '.join(accepted)}")
    params = TrainingParams(**training).validate()
    config = ModelConfig.from_dict(model)
    if "dense" not in model and config.model == "mlp":
        config.dense = (256, 128)
    return params, config
