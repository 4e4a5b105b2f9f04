"""A run's two figures, from its metrics.json: the learning curves and the test confusion matrix.

Written where matplotlib is installed (the `report` extra); elsewhere the run says so in one line.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger("convlab.runs")

LEARNING_CURVE = "learning_curve.png"
CONFUSION_MATRIX = "confusion_matrix.png"


def write_run_figures(metrics_path: Path, folder: Path) -> list[Path]:
    """The figures of one run in `folder`; [] (and a log line) without matplotlib."""
    try:
        from report.plotting import plt, save
    except ImportError:
        log.info("no figures for this run: matplotlib is not installed (pip install 'convlab[report]')")
        return []
    metrics = json.loads(Path(metrics_path).read_text(encoding="utf-8"))
    folder.mkdir(parents=True, exist_ok=True)
    return [learning_curve(plt, save, metrics, folder / LEARNING_CURVE),
            confusion_figure(plt, save, metrics, folder / CONFUSION_MATRIX)]


def learning_curve(plt, save, metrics: dict, path: Path) -> Path:
    history = metrics.get("history") or {}
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, key, title in ((axes[0], "loss", "Loss"), (axes[1], "accuracy", "Accuracy")):
        for prefix, label in (("", "training"), ("val_", "validation")):
            values = history.get(prefix + key) or []
            if len(values) == len(epochs) and len(epochs):
                ax.plot(epochs, values, marker="o" if len(epochs) < 30 else None, markersize=3, label=label)
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.legend()
    best = metrics.get("best_epoch")
    if best:
        axes[1].axvline(best, color="grey", linestyle=":", linewidth=1)
    fig.suptitle(f"Learning curves (test accuracy {metrics.get('test_accuracy', float('nan')):.4f}; "
                 f"dotted: the epoch kept)")
    return save(fig, path)


def confusion_figure(plt, save, metrics: dict, path: Path) -> Path:
    matrix = np.asarray(metrics.get("confusion_matrix") or [[0]], dtype=np.int64)
    classes = metrics.get("classes") or [str(i) for i in range(len(matrix))]
    size = max(4.0, 0.55 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    ax.imshow(matrix, cmap="Blues")
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(ticks, classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    if len(classes) <= 20:
        for (true, predicted), count in np.ndenumerate(matrix):
            ax.text(predicted, true, str(count), ha="center", va="center", fontsize=7,
                    color="white" if count > threshold else "black")
    ax.set_title(f"Test confusion matrix ({int(matrix.sum())} images)")
    return save(fig, path)
