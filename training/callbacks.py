"""Keras callbacks of the entry point: the metric log line, epoch timing, model selection on the
validation split, and checkpoints that let a stopped job resume (managed spot training)."""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import keras

metrics_log = logging.getLogger("convlab.metrics")
log = logging.getLogger("convlab.train")

STATE_FILE = "state.json"
LAST_MODEL = "last.keras"
BEST_WEIGHTS = "best.weights.h5"


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
            self._checkpoint(improved)
        if self.patience and epoch + 1 - state["best_epoch"] >= self.patience:
            log.info("early stopping: validation accuracy has not improved for %d epochs (best epoch %d)",
                     self.patience, state["best_epoch"])
            self.model.stop_training = True

    def _checkpoint(self, improved: bool) -> None:
        directory = self.checkpoint_dir
        directory.mkdir(parents=True, exist_ok=True)
        # Write under temporary names, then rename: a job stopped mid-write keeps the last good checkpoint.
        self.model.save(directory / ("tmp-" + LAST_MODEL))
        os.replace(directory / ("tmp-" + LAST_MODEL), directory / LAST_MODEL)
        if improved:
            self.model.save_weights(directory / ("tmp-" + BEST_WEIGHTS))
            os.replace(directory / ("tmp-" + BEST_WEIGHTS), directory / BEST_WEIGHTS)
        tmp_state = directory / ("tmp-" + STATE_FILE)
        tmp_state.write_text(json.dumps(self.state))
        os.replace(tmp_state, directory / STATE_FILE)


def load_checkpoint(checkpoint_dir: Path | None, identity: dict):
    """(model, state) from a checkpoint written by an earlier run with the same identity, else None."""
    if checkpoint_dir is None or not (checkpoint_dir / STATE_FILE).exists() \
            or not (checkpoint_dir / LAST_MODEL).exists():
        return None
    state = json.loads((checkpoint_dir / STATE_FILE).read_text())
    if state.get("identity") != identity:
        log.warning("checkpoint in %s belongs to a different configuration; starting over", checkpoint_dir)
        return None
    model = keras.models.load_model(checkpoint_dir / LAST_MODEL)
    best = None
    if (checkpoint_dir / BEST_WEIGHTS).exists():
        best_model = keras.models.clone_model(model)
        best_model.load_weights(checkpoint_dir / BEST_WEIGHTS)
        best = best_model.get_weights()
    log.info("resuming from checkpoint %s after epoch %d", checkpoint_dir, state["epoch"])
    return model, state, best

