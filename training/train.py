"""The SageMaker training entry point.

Runs the same way in AWS's TensorFlow training container (script mode, hyperparameters as
`--name value`), in convlab's own container (`train`, reading /opt/ml) and locally (the /opt/ml tree
emulated under a folder). `python -m training.train --help` lists the hyperparameters.
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:
    # Run as a script (`python training/train.py`, or this folder uploaded as SageMaker's source_dir
    # with entry_script="train.py"): load this folder as the `training` package, whatever its name
    # on disk, and run `training.train` as __main__ so the relative imports below resolve.
    import importlib.util as _util
    import os as _os
    import runpy as _runpy
    import sys as _sys

    _here = _os.path.dirname(_os.path.abspath(__file__))
    if _sys.path and _os.path.abspath(_sys.path[0] or ".") == _here:
        del _sys.path[0]  # the package's modules (data, models, ...) must not be top-level names
    _spec = _util.spec_from_file_location("training", _os.path.join(_here, "__init__.py"),
                                          submodule_search_locations=[_here])
    _sys.modules["training"] = _util.module_from_spec(_spec)
    _spec.loader.exec_module(_sys.modules["training"])
    _runpy.run_module("training.train", run_name="__main__", alter_sys=True)
    _sys.exit(0)

import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from . import checkpoints, distributed, environment  # noqa: E402
from .artifacts import metrics_document, write_artifacts  # noqa: E402
from .callbacks import EpochRecorder, metric_line, should_stop  # noqa: E402
from .data import DataError, ImageSet, load_channels, stratified_split  # noqa: E402
from .data.fingerprint import fingerprint  # noqa: E402
from .environment import is_chief  # noqa: E402
from .hyperparameters import TrainingParams, choose_epochs, describe_hyperparameters, parse_hyperparameters  # noqa: E402
from .hyperparameters import parse_image_size  # noqa: E402
from .input_description import describe_inputs  # noqa: E402
from .metrics import chance_advice  # noqa: E402
from .models import ConfigError, ModelConfig, build_model  # noqa: E402
from .precision import float32_copy, precision_policy  # noqa: E402

log = logging.getLogger("convlab.train")
metrics_log = logging.getLogger("convlab.metrics")

# The errors a user causes: reported in one line, without a traceback.
USER_ERRORS = (ConfigError, DataError, FileNotFoundError, ValueError, distributed.ChiefFailed)


def _subset(images: np.ndarray, labels: np.ndarray, limit: int, seed: int):
    if not limit or limit >= len(labels):
        return images, labels
    _, keep = stratified_split(labels, limit / len(labels), seed)
    return images[keep], labels[keep]


def prepare_data(channels: dict[str, str], params: TrainingParams):
    """Train/validation/test arrays. Validation always comes from the training data; the test set
    comes from the test channel (or the train channel's own test files), else a held-out split."""
    train, test = load_channels(channels, params.class_names, parse_image_size(params.image_size))
    images, labels = _subset(train.images, train.labels, params.max_train_samples, params.seed)
    if test is None:
        keep, held = stratified_split(labels, params.test_fraction, params.seed)
        test = ImageSet(images[held], labels[held], train.classes, f"{train.source} (held-out test split)")
        images, labels = images[keep], labels[keep]
    test_images, test_labels = _subset(test.images, test.labels, params.max_test_samples, params.seed)
    keep, val = stratified_split(labels, params.validation_fraction, params.seed + 1)
    return {
        "classes": list(train.classes),
        "train": (images[keep], labels[keep]),
        "val": (images[val], labels[val]),
        "test": (test_images, test_labels),
        "source": {"train": train.source, "test": test.source},
    }


def _compile(model, params: TrainingParams, config: ModelConfig, steps_per_epoch: int):
    import keras

    learning_rate = params.learning_rate
    if params.lr_schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(params.learning_rate,
                                                               decay_steps=params.epochs * steps_per_epoch)
    if params.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(learning_rate, weight_decay=params.weight_decay or 1e-4)
    elif params.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True)
    else:
        optimizer = keras.optimizers.Adam(learning_rate)
    if params.label_smoothing:
        loss = keras.losses.CategoricalCrossentropy(from_logits=config.logits,
                                                    label_smoothing=params.label_smoothing)
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=config.logits)
    # jit_compile=False: XLA is several times slower than the default kernels on CPU.
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"], jit_compile=False)


def _build_or_resume(strategy, chief: bool, checkpoint_path: Path | None, params: TrainingParams,
                     config: ModelConfig, steps_per_epoch: int, data_fingerprint: dict | None = None):
    """(model, state, best weights): from the newest checkpoint of this configuration and data, else a
    new model."""
    identity = checkpoints.identity(params.to_dict(), config.to_dict(), data_fingerprint)
    state = {"identity": identity, "epoch": 0, "history": {}, "seconds_per_epoch": [],
             "best_epoch": 0, "best_val_accuracy": -1.0}

    def build():
        model = build_model(config)
        _compile(model, params, config, steps_per_epoch)
        return model

    def load():
        return checkpoints.load_checkpoint(checkpoint_path, identity)

    if distributed.is_multi_worker(strategy):
        return distributed.start_across_workers(strategy, chief, build, load, state)
    with strategy.scope():
        return load() or (build(), state, None)


def _evaluate(model, val_ds, test_ds, config: ModelConfig, multi_worker: bool):
    """(val_loss, val_accuracy, test probabilities). Several workers each evaluate on their own,
    without collective ops (Keras' evaluate/predict cannot run under MultiWorkerMirroredStrategy)."""
    import tensorflow as tf

    if multi_worker:
        outputs = distributed.predict_local(model, val_ds)
        targets = np.concatenate([y for _, y in val_ds])
        labels = targets if targets.ndim == 1 else targets.argmax(axis=1)
        val_loss = float(model.loss(targets, outputs))
        val_accuracy = float((outputs.argmax(axis=1) == labels).mean())
        probabilities = distributed.predict_local(model, test_ds)
    else:
        val_loss, val_accuracy = model.evaluate(val_ds, verbose=0)
        probabilities = model.predict(test_ds, verbose=0)
    if config.logits:
        probabilities = tf.nn.softmax(probabilities).numpy()
    return float(val_loss), float(val_accuracy), probabilities


def run_training(hyperparameters: dict, channels: dict[str, str], model_dir: str,
                 output_dir: str | None = None, checkpoint_dir: str | None = None,
                 hosts: list[str] | None = None, current_host: str | None = None, num_gpus: int = 0) -> dict:
    """Train one model and write model_dir (see docs/model_dir.md); return the metrics.json dict.

    With several hosts only the chief writes model_dir and checkpoints."""
    started = time.perf_counter()
    params, config = parse_hyperparameters(hyperparameters)
    hosts = hosts or ["algo-1"]
    current_host = current_host or sorted(hosts)[0]
    # The strategy first: MultiWorkerMirroredStrategy must precede every TensorFlow op.
    strategy = distributed.make_strategy(hosts, current_host, num_gpus)
    multi_worker = distributed.is_multi_worker(strategy)
    chief = is_chief(hosts, current_host)
    data = prepare_data(channels, params)
    if checkpoint_dir:  # a checkpoint is resumed only on the data it was written for
        data["fingerprint"] = fingerprint(channels)
    x_train, y_train = data["train"]
    config.input_shape = tuple(int(d) for d in x_train.shape[1:])
    config.num_classes = len(data["classes"])
    config.validate()
    log.info("data: %d train, %d validation, %d test images of shape %s, %d classes",
             len(y_train), len(data["val"][1]), len(data["test"][1]), config.input_shape, config.num_classes)

    import keras

    keras.utils.set_random_seed(params.seed)
    steps_per_epoch = -(-len(y_train) // params.batch_size)
    choose_epochs(params, steps_per_epoch, len(y_train))
    checkpoint_path = Path(checkpoint_dir) if checkpoint_dir else None
    model, state, val_ds, test_ds = _train(strategy, chief, checkpoint_path, params, config, data, steps_per_epoch)

    val_loss, val_accuracy, probabilities = _evaluate(model, val_ds, test_ds, config, multi_worker)
    metrics, summary = metrics_document(model, params, config, data, state, val_loss, val_accuracy, probabilities)
    metrics["training_seconds"] = time.perf_counter() - started
    metrics_log.info(metric_line(final="test", test_loss=metrics["test_loss"], test_accuracy=metrics["test_accuracy"],
                                 val_accuracy=val_accuracy, params=summary["total_params"]))
    advice = chance_advice(metrics, params.batch_size)
    if advice:
        log.warning(advice)
    failure = None
    if chief:
        try:
            write_artifacts(model, config, params, metrics, summary, Path(model_dir),
                            describe_inputs(x_train, params.seed), samples=data["test"])
        except Exception as exc:  # the other workers wait for the model: the barrier tells them why
            if not multi_worker:
                raise
            failure = exc
    else:
        log.info("not the chief (%s of %s): no model written", current_host, sorted(hosts))
    if multi_worker:
        distributed.barrier(strategy, failure)
    if output_dir and chief:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def _train(strategy, chief: bool, checkpoint_path: Path | None, params: TrainingParams, config: ModelConfig,
           data: dict, steps_per_epoch: int):
    """(model with the best validation weights, state, validation and test batches): built or resumed,
    then fitted for the epochs still to run. With a mixed precision policy the model trains in it and
    a float32 copy with the same weights is returned, so what is evaluated and exported is float32."""
    with precision_policy(params.precision):
        model, state, best_weights = _build_or_resume(strategy, chief, checkpoint_path, params, config,
                                                      steps_per_epoch, data.get("fingerprint"))
        train_ds, val_ds, test_ds = _datasets(data, params, config, state["epoch"])
        recorder = EpochRecorder(checkpoint_path, state, params.early_stopping_patience, write=chief,
                                 patience_fraction=params.early_stopping_fraction,
                                 plateau=params.lr_schedule == "plateau")
        recorder.best_weights = best_weights
        verbose = params.verbose if params.verbose >= 0 else (1 if sys.stdout.isatty() else 2)
        stopped_early = state["best_epoch"] and should_stop(state["epoch"], state["best_epoch"],
                                                            params.early_stopping_patience,
                                                            params.early_stopping_fraction)
        if state["epoch"] < params.epochs and not stopped_early:
            if distributed.is_multi_worker(strategy):
                distributed.fit_distributed(strategy, model, train_ds, val_ds, epochs=params.epochs,
                                            initial_epoch=state["epoch"], steps_per_epoch=steps_per_epoch,
                                            callbacks=[recorder])
            else:
                model.fit(train_ds, validation_data=val_ds, epochs=params.epochs, initial_epoch=state["epoch"],
                          steps_per_epoch=steps_per_epoch, callbacks=[recorder], verbose=verbose, shuffle=False)
    if recorder.best_weights is not None:
        model.set_weights(recorder.best_weights)  # model selection on the validation split only
    if params.precision != "float32":
        model = float32_copy(model, config, lambda copy: _compile(copy, params, config, steps_per_epoch))
    return model, state, val_ds, test_ds


def _datasets(data: dict, params: TrainingParams, config: ModelConfig, epochs_done: int):
    """Training batches for the epochs still to run, validation and test batches."""
    import tensorflow as tf

    from .pipeline import make_dataset

    rescale = 1.0 / 255.0
    train_ds = make_dataset(*data["train"], params.batch_size, rescale, shuffle=True, seed=params.seed,
                            augment=params.augment, epochs=(epochs_done, params.epochs))
    val_ds = make_dataset(*data["val"], params.batch_size * 4, rescale)
    test_ds = make_dataset(*data["test"], params.batch_size * 4, rescale)
    if params.label_smoothing:
        def one_hot(x, y):
            return x, tf.one_hot(y, config.num_classes)
        train_ds, val_ds = train_ds.map(one_hot), val_ds.map(one_hot)
    return train_ds, val_ds, test_ds


def main(argv: list[str] | None = None, root: Path | None = None) -> int:
    """Run the entry point; `root` replaces /opt/ml (CONVLAB_OPT_ML does the same from outside)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        print("hyperparameters (--name value; in hyperparameters.json every value is a string):")
        print(describe_hyperparameters())
        return 0
    environment.configure_logging()
    env = None
    try:
        env = environment.resolve(argv, root)
        run_training(env.hyperparameters, env.channels, str(env.model_dir), str(env.output_data_dir),
                     str(env.checkpoint_dir), env.hosts, env.current_host, env.num_gpus)
        return 0
    except USER_ERRORS as exc:
        message = f"{type(exc).__name__}: {exc}"
        log.error("training failed: %s", message)
    except Exception as exc:  # anything else: keep the traceback for the failure file
        message = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        log.exception("training failed")
    failure = env.failure_file if env else Path(root or environment.opt_ml_root()) / "output" / "failure"
    environment.write_failure(failure, message)
    return 1


if __name__ == "__main__":
    sys.exit(main())
