"""Keras callbacks of the entry point: the metric log line, epoch timing, model selection on the
validation split, and checkpoints that let a stopped job resume (managed spot training)."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import keras

from .checkpoints import save_checkpoint
from .hyperparameters import PLATEAU_EPOCHS, PLATEAU_FACTOR, PLATEAU_MIN_SCALE

metrics_log = logging.getLogger("convlab.metrics")
log = logging.getLogger("convlab.train")


def metric_line(**values) -> str:
    parts = []
    for key, value in values.items():
        parts.append(f"{key}={value:.4f}" if isinstance(value, float) else f"{key}={value}")
    return "convlab-metrics " + " ".join(parts)


class EpochRecorder(keras.callbacks.Callback):
    """Times every epoch, keeps the history, prints the metric line, keeps the best weights by
    validation accuracy, stops early on patience, halves the learning rate on a plateau
    (lr_schedule=plateau), and checkpoints after every epoch."""

    def __init__(self, checkpoint_dir: Path | None, state: dict, patience: int, write: bool = True,
                 patience_fraction: float = 0.0, plateau: bool = False):
        super().__init__()
        self.checkpoint_dir = checkpoint_dir
        self.state = state  # history, seconds_per_epoch, best_epoch, best_val_accuracy, epoch, identity
        self.patience = patience
        self.patience_fraction = patience_fraction
        self.plateau = plateau
        self.write = write and checkpoint_dir is not None
        self.best_weights = None
        self._started = 0.0

    def on_train_begin(self, logs=None):
        if self.plateau and "learning_rate" in self.state:  # resumed: the rate the plateau rule reached
            self.model.optimizer.learning_rate = self.state["learning_rate"]

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
        if self.plateau:
            self._plateau_step(epoch + 1)
        if self.write:
            save_checkpoint(self.checkpoint_dir, self.model, state, self.best_weights)
        if should_stop(state["epoch"], state["best_epoch"], self.patience, self.patience_fraction):
            log.info("early stopping: validation accuracy has not improved for %d epochs (best epoch %d)",
                     state["epoch"] - state["best_epoch"], state["best_epoch"])
            self.model.stop_training = True

    def _plateau_step(self, epochs_done: int) -> None:
        """Halve the learning rate after PLATEAU_EPOCHS epochs without a new best (or halving)."""
        state = self.state
        optimizer = self.model.optimizer
        rate = float(state.get("learning_rate", float(optimizer.learning_rate)))
        state.setdefault("initial_learning_rate", rate)
        since = epochs_done - max(state["best_epoch"], state.get("last_lr_change", 0))
        floor = state["initial_learning_rate"] * PLATEAU_MIN_SCALE
        if since >= PLATEAU_EPOCHS and rate * PLATEAU_FACTOR >= floor * (1 - 1e-9):
            rate *= PLATEAU_FACTOR
            optimizer.learning_rate = rate
            state["last_lr_change"] = epochs_done
            log.info("learning rate halved to %.3g after %d epochs without a better validation accuracy",
                     rate, since)
        state["learning_rate"] = rate
        state.setdefault("history", {}).setdefault("learning_rate", []).append(rate)


def should_stop(epochs_done: int, best_epoch: int, patience: int, fraction: float = 0.0) -> bool:
    """Early stopping: `patience` epochs without a better validation accuracy, and, with `fraction`,
    at least that share of the epochs run so far (so the best epoch is never in the last `fraction`)."""
    if not patience:
        return False
    waited = epochs_done - best_epoch
    return waited >= patience and waited >= fraction * epochs_done
