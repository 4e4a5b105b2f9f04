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
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from . import environment  # noqa: E402
from .callbacks import EpochRecorder, load_checkpoint, metric_line  # noqa: E402
from .data import DataError, ImageSet, load_channels, stratified_split  # noqa: E402
from .hyperparameters import TrainingParams, describe_hyperparameters, parse_hyperparameters  # noqa: E402
from .models import ConfigError, ModelConfig, build_model, model_summary  # noqa: E402

log = logging.getLogger("convlab.train")
metrics_log = logging.getLogger("convlab.metrics")

# The errors a user causes: reported in one line, without a traceback.
USER_ERRORS = (ConfigError, DataError, FileNotFoundError, ValueError)


def _subset(images: np.ndarray, labels: np.ndarray, limit: int, seed: int):
    if not limit or limit >= len(labels):
        return images, labels
    _, keep = stratified_split(labels, limit / len(labels), seed)
    return images[keep], labels[keep]


def prepare_data(channels: dict[str, str], params: TrainingParams):
    """Train/validation/test arrays. Validation always comes from the training data; the test set
    comes from the test channel (or the train channel's own test files), else a held-out split."""
    train, test = load_channels(channels, params.class_names)
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


def choose_strategy(hosts: list[str], current_host: str, num_gpus: int):
    """MultiWorkerMirroredStrategy across SageMaker hosts, MirroredStrategy across local GPUs."""
    import tensorflow as tf

    if len(hosts) > 1:
        os.environ["TF_CONFIG"] = json.dumps(environment.tf_config(hosts, current_host))
        return tf.distribute.MultiWorkerMirroredStrategy()
    if num_gpus > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


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


def _confusion(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> list[list[int]]:
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix.tolist()


def export_saved_model(model, config: ModelConfig, path: Path) -> None:
    """SavedModel with serving_default: float32 `images` in, `probabilities` out (TF Serving layout)."""
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(images):
        outputs = model(images, training=False)
        if config.logits:
            outputs = tf.nn.softmax(outputs)
        return {"probabilities": outputs}

    archive.add_endpoint("serving_default", serve,
                         input_signature=[tf.TensorSpec([None, *config.input_shape], tf.float32, name="images")])
    archive.write_out(str(path), verbose=False)


def run_training(hyperparameters: dict, channels: dict[str, str], model_dir: str,
                 output_dir: str | None = None, checkpoint_dir: str | None = None,
                 hosts: list[str] | None = None, current_host: str | None = None, num_gpus: int = 0) -> dict:
    """Train one model and write model_dir (see docs/model_dir.md); return the metrics.json dict."""
    started = time.perf_counter()
    params, config = parse_hyperparameters(hyperparameters)
    hosts = hosts or ["algo-1"]
    current_host = current_host or hosts[0]
    data = prepare_data(channels, params)
    x_train, y_train = data["train"]
    config.input_shape = tuple(int(d) for d in x_train.shape[1:])
    config.num_classes = len(data["classes"])
    config.validate()
    log.info("data: %d train, %d validation, %d test images of shape %s, %d classes",
             len(y_train), len(data["val"][1]), len(data["test"][1]), config.input_shape, config.num_classes)

    import keras
    import tensorflow as tf

    from .pipeline import make_dataset

    keras.utils.set_random_seed(params.seed)
    rescale = 1.0 / 255.0
    steps_per_epoch = -(-len(y_train) // params.batch_size)
    train_ds = make_dataset(x_train, y_train, params.batch_size, rescale, shuffle=True, seed=params.seed,
                            augment=params.augment == "light", repeat=True)
    val_ds = make_dataset(*data["val"], params.batch_size * 4, rescale)
    if params.label_smoothing:
        def one_hot(x, y):
            return x, tf.one_hot(y, config.num_classes)
        train_ds, val_ds = train_ds.map(one_hot), val_ds.map(one_hot)

    identity = {"config": config.to_dict(), "seed": params.seed, "batch_size": params.batch_size,
                "max_train_samples": params.max_train_samples, "augment": params.augment}
    checkpoint_path = Path(checkpoint_dir) if checkpoint_dir else None
    strategy = choose_strategy(hosts, current_host, num_gpus)
    is_chief = current_host == sorted(hosts)[0]
    with strategy.scope():
        resumed = load_checkpoint(checkpoint_path, identity)
        if resumed:
            model, state, best_weights = resumed
        else:
            model = build_model(config)
            _compile(model, params, config, steps_per_epoch)
            state = {"identity": identity, "epoch": 0, "history": {}, "seconds_per_epoch": [],
                     "best_epoch": 0, "best_val_accuracy": -1.0}
            best_weights = None
    recorder = EpochRecorder(checkpoint_path, state, params.early_stopping_patience, write=is_chief)
    recorder.best_weights = best_weights
    verbose = params.verbose if params.verbose >= 0 else (1 if sys.stdout.isatty() else 2)
    stopped_early = state["best_epoch"] and params.early_stopping_patience and \
        state["epoch"] - state["best_epoch"] >= params.early_stopping_patience
    if state["epoch"] < params.epochs and not stopped_early:
        model.fit(train_ds, validation_data=val_ds, epochs=params.epochs, initial_epoch=state["epoch"],
                  steps_per_epoch=steps_per_epoch, callbacks=[recorder], verbose=verbose, shuffle=False)
    if recorder.best_weights is not None:
        model.set_weights(recorder.best_weights)  # model selection on the validation split only

    val_loss, val_accuracy = model.evaluate(val_ds, verbose=0)
    x_test, y_test = data["test"]
    test_ds = make_dataset(x_test, y_test, params.batch_size * 4, rescale)
    probabilities = model.predict(test_ds, verbose=0)
    if config.logits:
        probabilities = tf.nn.softmax(probabilities).numpy()
    predicted = probabilities.argmax(axis=1)
    test_accuracy = float((predicted == y_test).mean())
    picked = probabilities[np.arange(len(y_test)), y_test]
    test_loss = float(-np.log(np.clip(picked, 1e-12, 1.0)).mean())
    summary = model_summary(model)
    metrics = {
        "model_type": config.model,
        "config": config.to_dict(),
        "hyperparameters": params.to_dict(),
        "seed": params.seed,
        "params": summary["total_params"],
        "flops_per_image": summary["flops_per_image"],
        "epochs_completed": state["epoch"],
        "best_epoch": state["best_epoch"],
        "history": state["history"],
        "seconds_per_epoch": state["seconds_per_epoch"],
        "mean_seconds_per_epoch": float(np.mean(state["seconds_per_epoch"])) if state["seconds_per_epoch"] else 0.0,
        "val_accuracy": float(val_accuracy),
        "val_loss": float(val_loss),
        "test_accuracy": test_accuracy,
        "test_loss": test_loss,
        "confusion_matrix": _confusion(y_test, predicted, config.num_classes),
        "classes": data["classes"],
        "num_train": int(len(y_train)),
        "num_val": int(len(data["val"][1])),
        "num_test": int(len(y_test)),
        "data_source": data["source"],
        "training_seconds": time.perf_counter() - started,
    }
    metrics_log.info(metric_line(final="test", test_loss=test_loss, test_accuracy=test_accuracy,
                                 val_accuracy=float(val_accuracy), params=summary["total_params"]))
    if is_chief:
        _write_artifacts(model, config, params, metrics, summary, Path(model_dir))
    if output_dir:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def _write_artifacts(model, config: ModelConfig, params: TrainingParams, metrics: dict, summary: dict,
                     model_dir: Path) -> None:
    """Write every artifact into a staging folder first, then move them into model_dir, so a failure
    never leaves a half-written model behind."""
    import keras
    import tensorflow as tf

    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=model_dir))
    try:
        model.save(staging / "model.keras")
        export_saved_model(model, config, staging / "1")
        preprocessing = {"height": config.input_shape[0], "width": config.input_shape[1],
                         "channels": config.input_shape[2], "rescale": 1.0 / 255.0,
                         "color_mode": "L" if config.input_shape[2] == 1 else "RGB"}
        documents = {
            "labels.json": metrics["classes"],
            "config.json": {"model": config.to_dict(), "training": params.to_dict(),
                            "preprocessing": preprocessing, "classes": metrics["classes"],
                            "versions": {"tensorflow": tf.__version__, "keras": keras.__version__}},
            "metrics.json": metrics,
            "model_summary.json": summary,
        }
        for name, document in documents.items():
            (staging / name).write_text(json.dumps(document, indent=2))
        if params.export_onnx:
            from .onnx_export import export_onnx

            export_onnx(staging)
        from .explain_export import export_explain

        export_explain(model, staging, onnx=params.export_onnx)
        for entry in staging.iterdir():
            target = model_dir / entry.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(entry, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("model written to %s", model_dir)


def configure_logging() -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                            stream=sys.stderr)
    metrics = logging.getLogger("convlab.metrics")
    if not metrics.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        metrics.addHandler(handler)
        metrics.propagate = False
        metrics.setLevel(logging.INFO)


def _write_failure(path: Path, message: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(message + "\n")
    except OSError as exc:
        log.error("could not write the failure file %s: %s", path, exc)


def main(argv: list[str] | None = None, root: Path | None = None) -> int:
    """Run the entry point; `root` replaces /opt/ml (CONVLAB_OPT_ML does the same from outside)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        print("hyperparameters (--name value; in hyperparameters.json every value is a string):")
        print(describe_hyperparameters())
        return 0
    configure_logging()
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
    _write_failure(failure, message)
    return 1


if __name__ == "__main__":
    sys.exit(main())
