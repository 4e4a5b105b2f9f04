"""Keras callbacks of the entry point: the metric log line, epoch timing, model selection on the
validation split, and checkpoints that let a stopped job resume (managed spot training)."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import keras

from .checkpoints import save_checkpoint

metrics_log = logging.getLogger("convlab.metrics")
log = logging.getLogger("convlab.train")


def metric_line(**values) -> str:
    parts = []
    for key, value in values.items():
        parts.append(f"{key}={value:.4f}" if isinstance(value, float) else f"{key}={value}")
    return "convlab-metrics " + " ".join(parts)


class EpochRecorder(keras.callbacks.Callback):
    """Times every epoch, keeps the history, prints the metric line, keeps the best weights by
    validation accuracy, stops early on patience, and checkpoints after every epoch."""

    def __init__(self, checkpoint_dir: Path | None, state: dict, patience: int, write: bool = True):
        super().__init__()
        self.checkpoint_dir = checkpoint_dir
        self.state = state  # history, seconds_per_epoch, best_epoch, best_val_accuracy, epoch, identity
        self.patience = patience
        self.write = write and checkpoint_dir is not None
        self.best_weights = None
        self._started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._started
        logs = dict(logs or {})
        state = self.state
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            state["history"].setdefault(key, []).append(float(logs.get(key, float("nan"))))
        state["seconds_per_epoch"].append(seconds)
        state["epoch"] = epoch + 1
        metrics_log.info(metric_line(epoch=epoch + 1, loss=float(logs.get("loss", 0.0)),
                                     accuracy=float(logs.get("accuracy", 0.0)),
                                     val_loss=float(logs.get("val_loss", 0.0)),
                                     val_accuracy=float(logs.get("val_accuracy", 0.0)), seconds=seconds))
        val_accuracy = float(logs.get("val_accuracy", 0.0))
        improved = val_accuracy > state["best_val_accuracy"]
        if improved:
            state["best_val_accuracy"] = val_accuracy
            state["best_epoch"] = epoch + 1
            self.best_weights = self.model.get_weights()
        if self.write:
            save_checkpoint(self.checkpoint_dir, self.model, state, self.best_weights)
        if self.patience and epoch + 1 - state["best_epoch"] >= self.patience:
            log.info("early stopping: validation accuracy has not improved for %d epochs (best epoch %d)",
                     self.patience, state["best_epoch"])
            self.model.stop_training = True
