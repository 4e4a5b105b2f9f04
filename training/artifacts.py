"""The model_dir a training run leaves (docs/model_dir.md): SavedModel, Keras model, ONNX, labels,
config, metrics and the model summary, written to a staging folder first and then put in place of
everything the folder held, so no file of an earlier run (a model.onnx, an explain.onnx) stays
beside the new model. config.json records a sha256 of the weights, and model.onnx and explain.onnx
carry the same digest in their metadata: serving refuses an ONNX file from other weights."""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .checkpoints import weights_digest
from .hyperparameters import TrainingParams
from .models import ModelConfig, model_summary

log = logging.getLogger("convlab.train")


def confusion(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> list[list[int]]:
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix.tolist()


def metrics_document(model, params: TrainingParams, config: ModelConfig, data: dict, state: dict,
             val_loss: float, val_accuracy: float, probabilities: np.ndarray) -> tuple[dict, dict]:
    """The metrics.json document (without training_seconds) and the model summary."""
    y_test = data["test"][1]
    predicted = probabilities.argmax(axis=1)
    picked = probabilities[np.arange(len(y_test)), y_test]
    summary = model_summary(model)
    seconds = state["seconds_per_epoch"]
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
        "seconds_per_epoch": seconds,
        "mean_seconds_per_epoch": float(np.mean(seconds)) if seconds else 0.0,
        "val_accuracy": val_accuracy,
        "val_loss": val_loss,
        "test_accuracy": float((predicted == y_test).mean()),
        "test_loss": float(-np.log(np.clip(picked, 1e-12, 1.0)).mean()),
        "confusion_matrix": confusion(y_test, predicted, config.num_classes),
        "classes": data["classes"],
        "num_train": int(len(data["train"][1])),
        "num_val": int(len(data["val"][1])),
        "num_test": int(len(y_test)),
        "data_source": data["source"],
    }
    return metrics, summary


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


def write_artifacts(model, config: ModelConfig, params: TrainingParams, metrics: dict, summary: dict,
                     model_dir: Path, input_description: dict | None = None,
                     samples: tuple | None = None) -> None:
    """Write every artifact into a staging folder first, then replace model_dir's contents with
    them, so a failure never leaves a half-written model behind and a rerun leaves nothing old.
    samples: (test images, labels) for samples/."""
    import keras
    import tensorflow as tf

    model_dir.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(model_dir)
    staging = Path(tempfile.mkdtemp(prefix=STAGING, dir=model_dir))
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
                            "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
                            "weights_sha256": weights_digest(model.get_weights())},
            "metrics.json": metrics,
            "model_summary.json": summary,
        }
        if input_description is not None:
            documents["input.json"] = input_description
        for name, document in documents.items():
            (staging / name).write_text(json.dumps(document, indent=2))
        if params.export_onnx:
            from .onnx_export import export_onnx

            export_onnx(staging)
        from .explain_export import export_explain

        export_explain(model, staging, onnx=params.export_onnx)
        if samples is not None:
            from .samples_export import export_samples

            export_samples(*samples, metrics["classes"], staging)
        replace_contents(model_dir, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("model written to %s", model_dir)


STAGING, PREVIOUS = ".staging-", ".previous-"


def _remove_leftovers(model_dir: Path) -> None:
    for stale in [*model_dir.glob(STAGING + "*"), *model_dir.glob(PREVIOUS + "*")]:
        log.info("removing %s, left by an interrupted run", stale)
        shutil.rmtree(stale, ignore_errors=True)


def replace_contents(model_dir: Path, staging: Path) -> None:
    """Make model_dir hold exactly staging's entries: everything else it held is moved into one
    folder aside first and deleted last (model_dir itself may be a mount point, /opt/ml/model
    in a container, so it is never renamed)."""
    aside = Path(tempfile.mkdtemp(prefix=PREVIOUS, dir=model_dir))
    for entry in list(model_dir.iterdir()):
        if entry not in (staging, aside):
            os.replace(entry, aside / entry.name)
    for entry in list(staging.iterdir()):
        os.replace(entry, model_dir / entry.name)
    shutil.rmtree(aside, ignore_errors=True)
