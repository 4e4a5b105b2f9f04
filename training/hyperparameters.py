"""Training hyperparameters: every name the entry point accepts, parsed and checked."""
from __future__ import annotations

import dataclasses
import difflib
import logging
from dataclasses import dataclass

from .models.config import MODEL_TYPES, PADDINGS, POOLINGS, ConfigError, ModelConfig, parse_value
from .precision import PRECISIONS

log = logging.getLogger("convlab.train")

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "plateau")
# lr_schedule=plateau: the learning rate halves after this many epochs without a better validation
# accuracy (counted from the best epoch or the last halving), down to at most 1/64 of its start.
PLATEAU_EPOCHS = 2
PLATEAU_FACTOR = 0.5
PLATEAU_MIN_SCALE = 1 / 64
AUGMENTATIONS = ("none", "light", "photo")
# Without an explicit `epochs`, a run takes at least MIN_STEPS optimizer steps (more epochs on a small
# data set, at most MAX_AUTO_EPOCHS), so 900 images at batch 128 do not stop after 30 steps at chance.
MIN_STEPS = 500
MAX_AUTO_EPOCHS = 100
# Short names other tools use, and the hyperparameter each means here.
ALIASES = {"lr": "learning_rate", "bs": "batch_size", "batch": "batch_size", "num_epochs": "epochs",
           "n_epochs": "epochs", "kernel": "kernel_size", "num_filters": "filters", "layers": "depth",
           "num_layers": "depth", "blocks": "depth", "wd": "weight_decay", "arch": "model",
           "architecture": "model", "classes": "class_names", "size": "image_size"}
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
    precision: str = "float32"
    early_stopping_patience: int = 0
    early_stopping_fraction: float = 0.0
    export_onnx: bool = True
    verbose: int = 2
    class_names: str = ""
    image_size: str = ""
    min_steps: int = MIN_STEPS

    KINDS = {
        "epochs": int, "batch_size": int, "learning_rate": float, "optimizer": str, "lr_schedule": str,
        "weight_decay": float, "label_smoothing": float, "seed": int, "validation_fraction": float,
        "test_fraction": float, "max_train_samples": int, "max_test_samples": int, "augment": str,
        "precision": str,
        "early_stopping_patience": int, "early_stopping_fraction": float, "export_onnx": bool, "verbose": int, "class_names": str,
        "image_size": str, "min_steps": int,
    }
    # Set by parse_hyperparameters: whether `epochs` was given, or is the default that min_steps may raise.
    epochs_given = True

    def validate(self) -> "TrainingParams":
        if self.epochs < 1:
            raise ConfigError(f"hyperparameter 'epochs': expected an integer >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"hyperparameter 'batch_size': expected an integer >= 1, got {self.batch_size}")
        if not self.learning_rate > 0:
            raise ConfigError(f"hyperparameter 'learning_rate': expected > 0, got {self.learning_rate}")
        for name, allowed in (("optimizer", OPTIMIZERS), ("lr_schedule", SCHEDULES), ("augment", AUGMENTATIONS),
                              ("precision", PRECISIONS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"hyperparameter '{name}': expected one of {allowed}, got {getattr(self, name)!r}")
        for name in ("validation_fraction", "test_fraction"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ConfigError(f"hyperparameter '{name}': expected 0 < value < 1, got {getattr(self, name)}")
        parse_image_size(self.image_size)
        for name in ("max_train_samples", "max_test_samples", "early_stopping_patience", "weight_decay",
                     "min_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"hyperparameter '{name}': expected >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.early_stopping_fraction < 1.0:
            raise ConfigError("hyperparameter 'early_stopping_fraction': expected 0 <= value < 1, "
                              f"got {self.early_stopping_fraction}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"hyperparameter 'label_smoothing': expected 0 <= value < 1, got {self.label_smoothing}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Model fields that come from the data, never from a hyperparameter.
DATA_FIELDS = ("input_shape", "num_classes")

# name -> what it does (allowed values where they are a fixed set); `python -m training.train --help`.
DESCRIPTIONS = {
    "model": f"architecture: one of {', '.join(MODEL_TYPES)} (the mlp is the non-convolutional baseline)",
    "depth": "convolutional blocks (cnn)",
    "filters": "filters of the first block; block i has filters * filter_multiplier**i",
    "filter_multiplier": "filter growth from one block to the next",
    "kernel_size": "kernel height and width",
    "stride": "convolution stride",
    "padding": f"one of {', '.join(PADDINGS)}",
    "pooling": f"after each block: one of {', '.join(POOLINGS)}",
    "pool_size": "pooling window and stride",
    "batch_norm": "batch normalisation after each convolution: true or false",
    "convs_per_block": "convolutions per block",
    "dropout": "dropout before the dense head, 0 <= value < 1",
    "dense": "widths of the dense head, comma-separated (e.g. 256,128; the mlp's default is 256,128)",
    "logits": "the last layer outputs logits instead of probabilities: true or false",
    "epochs": "training epochs, >= 1",
    "batch_size": "images per step, >= 1",
    "learning_rate": "initial learning rate, > 0",
    "optimizer": f"one of {', '.join(OPTIMIZERS)}",
    "lr_schedule": f"one of {', '.join(SCHEDULES)} (plateau: halve the rate after {PLATEAU_EPOCHS} epochs "
                   "without a better validation accuracy)",
    "weight_decay": "adamw weight decay, >= 0 (0: 1e-4 with adamw)",
    "label_smoothing": "0 <= value < 1",
    "seed": "seed of the splits, the subsets, the weights and the shuffling",
    "validation_fraction": "share of the training data held out for validation, 0 < value < 1",
    "test_fraction": "share held out as the test set when there is no test data, 0 < value < 1",
    "max_train_samples": "train on a stratified subset of this many images (0: all)",
    "max_test_samples": "test on this many images (0: all)",
    "augment": f"one of {', '.join(AUGMENTATIONS)} (light: flips and 2-pixel shifts; photo: flips, 3-pixel "
               "shifts, 15 % zoom, contrast and brightness: robust to what the serving photo mapping leaves)",
    "precision": f"one of {', '.join(PRECISIONS)} (mixed: faster on CPUs with avx512_bf16/AMX and on GPUs; "
                 "the exported model is float32)",
    "early_stopping_patience": "epochs without a better validation accuracy before stopping (0: never)",
    "early_stopping_fraction": "also wait at least this share of the epochs run so far before stopping, "
                               "0 <= value < 1 (0.2: the best epoch is never in the last 20 %)",
    "export_onnx": "also write model.onnx: true or false",
    "verbose": "Keras progress output: 0 none, 1 bar, 2 one line per epoch (-1: bar on a terminal)",
    "class_names": "names of the classes in label order, comma-separated, one per class (default: from the data)",
    "image_size": "resize every image to this size: 64 or 64x48 (height x width; default: the data's most "
                  "common size)",
    "min_steps": f"when epochs is not given: train at least this many optimizer steps (more epochs on small "
                 f"data, at most {MAX_AUTO_EPOCHS}; 0: the default epochs)",
}


def parse_image_size(text: str) -> tuple[int, int] | None:
    """The image_size hyperparameter: "" (the data's most common size), "64" (64x64) or "64x48" (height x width)."""
    text = str(text).strip().lower()
    if not text:
        return None
    parts = text.split("x")
    if len(parts) in (1, 2) and all(part.strip().isdigit() and int(part) >= 1 for part in parts):
        height, width = int(parts[0]), int(parts[-1])
        return height, width
    raise ConfigError(f"hyperparameter 'image_size': expected a size such as 64 or 64x48 (height x width, "
                      f"pixels >= 1), got {text!r}")


def choose_epochs(params: "TrainingParams", steps_per_epoch: int, images: int) -> int:
    """The epochs to run, set on params: `epochs` as given, else enough for min_steps optimizer steps (at
    most MAX_AUTO_EPOCHS, never fewer than the default), so a small data set is not stopped at chance."""
    if params.epochs_given or not params.min_steps:
        return params.epochs
    needed = -(-params.min_steps // max(1, steps_per_epoch))
    epochs = max(params.epochs, min(MAX_AUTO_EPOCHS, needed))
    if epochs != params.epochs:
        log.info("%d training images at batch_size %d are %d steps per epoch: training %d epochs (at least "
                 "min_steps=%d optimizer steps, as epochs was not given; --epochs sets them)",
                 images, params.batch_size, steps_per_epoch, epochs, params.min_steps)
        params.epochs = epochs
    return epochs


def suggest(name: str, accepted: list[str]) -> str | None:
    """The accepted name a misspelt or foreign one most likely means: an alias (lr), the initials of a
    name (bs: batch_size), a close spelling (epoch), or a name that starts with it (kernel)."""
    key = name.lower().replace("-", "_")
    if key in ALIASES:
        return ALIASES[key]
    initials = [a for a in accepted if "_" in a and "".join(part[0] for part in a.split("_")) == key]
    if initials:
        return initials[0]
    close = difflib.get_close_matches(key, accepted, n=1, cutoff=0.6)
    if close:
        return close[0]
    starts = [a for a in accepted if len(key) >= 3 and a.startswith(key)]
    return starts[0] if len(starts) == 1 else None


def unknown_error(unknown: dict) -> ConfigError:
    """One error naming every unknown hyperparameter, each with the name it most likely means."""
    accepted = accepted_names()
    parts = []
    for name, value in unknown.items():
        close = suggest(str(name), accepted)
        hint = f"; did you mean '{close}'?" if close else ""
        parts.append(f"'{name}' (value {value!r}{hint})")
    noun = "hyperparameter" if len(parts) == 1 else f"hyperparameters ({len(parts)})"
    return ConfigError(f"unknown {noun} {', '.join(parts)}; accepted: {', '.join(accepted)}")


def accepted_names() -> list[str]:
    return sorted(set(TrainingParams.KINDS) | (set(ModelConfig.FIELD_KINDS) - set(DATA_FIELDS)))


def _kind_name(kind) -> str:
    return {"int_list": "ints"}.get(kind, getattr(kind, "__name__", str(kind)))


def describe_hyperparameters() -> str:
    """One line per hyperparameter: name, type, default, and what it does or the values allowed."""
    training_defaults, model_defaults = TrainingParams().to_dict(), ModelConfig().to_dict()
    lines = ["  (the entry point's defaults; `convlab train --local` takes the lab's training/studies/base.json "
             "for what is not given: the base CNN with batch_norm, dropout 0.3 and a cosine schedule)"]
    for name in accepted_names():
        kind = TrainingParams.KINDS.get(name) or ModelConfig.FIELD_KINDS[name]
        default = training_defaults.get(name, model_defaults.get(name))
        if isinstance(default, (list, tuple)):
            default = ",".join(str(v) for v in default)
        elif isinstance(default, bool):
            default = str(default).lower()
        shown = f"{default!s}" if default != "" else '""'
        lines.append(f"  {name:<24} {_kind_name(kind):<6} default {shown:<9} {DESCRIPTIONS.get(name, '')}")
    return "\n".join(lines)


def parse_hyperparameters(raw: dict) -> tuple[TrainingParams, ModelConfig]:
    """Split raw hyperparameters (strings or values) into training params and a model config.

    An unknown name is an error that lists the accepted names, so a typo never goes unnoticed.
    """
    training, model, unknown = {}, {}, {}
    for name, value in raw.items():
        key = str(name).replace("-", "_")
        if is_reserved(key):
            continue
        if key in TrainingParams.KINDS:
            training[key] = parse_value(key, value, TrainingParams.KINDS[key])
        elif key in ModelConfig.FIELD_KINDS and key not in DATA_FIELDS:
            model[key] = value
        else:
            unknown[name] = value
    if unknown:
        raise unknown_error(unknown)
    params = TrainingParams(**training).validate()
    params.epochs_given = "epochs" in training
    config = ModelConfig.from_dict(model)
    if "dense" not in model and config.model == "mlp":
        config.dense = (256, 128)
    config.check_fields()  # a wrong value is refused before any data is read; the input size comes later
    return params, config
