"""The model_dir a training run leaves (docs/model_dir.md): SavedModel, Keras model, ONNX, labels,
config, metrics and the model summary, written to a staging folder first and moved into place."""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

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
                     model_dir: Path, samples: tuple | None = None) -> None:
    """Write every artifact into a staging folder first, then move them into model_dir, so a failure
    never leaves a half-written model behind. samples: (test images, labels) for samples/."""
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
        if samples is not None:
            from .samples_export import export_samples

            export_samples(*samples, metrics["classes"], staging)
        for entry in staging.iterdir():
            target = model_dir / entry.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(entry, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("model written to %s", model_dir)
