"""Figures drawn from run records: the baseline-vs-CNN comparison and each study's results."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.ticker import MaxNLocator, NullFormatter

from .analysis import SettingSummary, StudySummary, count, per_class_accuracy, pooled_confusion
from .plotting import plt, save

COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


def _color(index: int) -> str:
    return COLORS[index % len(COLORS)]


def _spread(setting: SettingSummary, key: str, scale: float = 1.0):
    """The error bar half-length: scale x sample std, or None (no bar) with a single seed."""
    return scale * setting.std(key) if setting.n > 1 else None


def _tick(setting: SettingSummary) -> str:
    """A setting's axis label with the number of seeds its error bar is computed from."""
    return f"{setting.label}\n(n={setting.n})"


# --- baseline vs CNN ------------------------------------------------------------------------------

def parameter_counts(settings: list[SettingSummary], path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    labels = [s.label for s in settings]
    for ax, values, title in ((axes[0], [s.params for s in settings], "parameters"),
                              (axes[1], [s.flops for s in settings], "FLOPs per image")):
        bars = ax.bar(labels, values, color=[_color(i) for i in range(len(settings))])
        for bar, value in zip(bars, values):
            ax.annotate(count(value), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=8)
        ax.set_yscale("log")
        ax.set_title(title)
    fig.suptitle("Model size and compute")
    return save(fig, path)


def _mean_curve(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    length = min(len(r["history"][key]) for r in records)
    curves = np.array([r["history"][key][:length] for r in records], dtype=float)
    return curves.mean(axis=0), (curves.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros(length))


def learning_curves(settings: list[SettingSummary], path: Path) -> Path:
    """Accuracy and loss per epoch, train (dashed) and validation (solid), mean over seeds with a ±1 std band."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for index, setting in enumerate(s for s in settings if s.n):
        for ax, metric in ((axes[0], "accuracy"), (axes[1], "loss")):
            for key, style in ((metric, "--"), (f"val_{metric}", "-")):
                mean, std = _mean_curve(setting.records, key)
                epochs = np.arange(1, len(mean) + 1)
                split = "validation" if key.startswith("val_") else "train"
                ax.plot(epochs, mean, style, color=_color(index), marker="o", markersize=3,
                        label=f"{setting.label} {split} (n={setting.n})")
                ax.fill_between(epochs, mean - std, mean + std, color=_color(index), alpha=0.15)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(metric)
            ax.set_title(f"{metric}: mean over seeds, band = ±1 sample std")
    axes[0].legend(fontsize=8)
    return save(fig, path)


def confusion_matrices(settings: list[SettingSummary], classes: list[str], path: Path) -> Path:
    """Row-normalised confusion matrices (test set, pooled over seeds), side by side."""
    shown = [s for s in settings if s.n]
    fig, axes = plt.subplots(1, len(shown), figsize=(5.2 * len(shown), 5))
    for ax, setting in zip(np.atleast_1d(axes), shown):
        matrix = pooled_confusion(setting).astype(float)
        rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
        for (row, col), value in np.ndenumerate(rates):
            if value >= 0.005:
                ax.text(col, row, f"{100 * value:.0f}", ha="center", va="center", fontsize=6,
                        color="white" if value > 0.5 else "black")
        ticks = np.arange(len(classes))
        ax.set_xticks(ticks, classes, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(ticks, classes, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{setting.label} ({setting.n} seeds, % of each true class)")
    return save(fig, path)


def per_class(settings: list[SettingSummary], classes: list[str], path: Path) -> Path:
    shown = [s for s in settings if s.n]
    fig, ax = plt.subplots(figsize=(10, 3.8))
    width = 0.8 / max(len(shown), 1)
    positions = np.arange(len(classes))
    for index, setting in enumerate(shown):
        mean, std = per_class_accuracy(setting)
        ax.bar(positions + (index - (len(shown) - 1) / 2) * width, 100 * mean, width,
               yerr=100 * std if setting.n > 1 else None,
               capsize=2, color=_color(index), label=f"{setting.label} (n={setting.n})")
    ax.set_xticks(positions, classes, rotation=30, ha="right")
    ax.set_ylabel("test accuracy of the class (%)")
    ax.set_ylim(0, 119)
    ax.set_title("Per-class accuracy: bar = mean over n seeds, error bar = ±1 sample std")
    ax.legend(loc="upper right", ncol=max(len(shown), 1), fontsize=8)
    return save(fig, path)


# --- one study ------------------------------------------------------------------------------------

def study_accuracy(study: StudySummary, path: Path) -> Path:
    """Test accuracy per setting: each seed as a dot, mean ± 1 sample std as an error bar (none when n = 1)."""
    shown = [s for s in study.settings if s.n]
    fig, ax = plt.subplots(figsize=(max(4.5, 1.6 * len(shown) + 2), 3.6))
    for index, setting in enumerate(shown):
        values = 100 * setting.values("test_accuracy")
        ax.errorbar(index, values.mean(), yerr=_spread(setting, "test_accuracy", 100), fmt="s", color=_color(index),
                    capsize=6, markersize=7)
        ax.scatter(np.full(len(values), index + 0.12), values, color=_color(index), alpha=0.5, s=14)
    ax.set_xticks(range(len(shown)), [_tick(s) for s in shown])
    ax.set_xlim(-0.6, len(shown) - 0.4)
    ax.set_ylabel("test accuracy (%)")
    ax.set_xlabel(study.factor)
    ax.set_title(f"{study.title}: test accuracy; square = mean, bar = ±1 sample std over n seeds, "
                 "dots = single seeds")
    return save(fig, path)


def study_cost(study: StudySummary, path: Path) -> Path:
    """Accuracy against parameter count and against FLOPs per image (log scale)."""
    shown = [s for s in study.settings if s.n]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, attribute, name in ((axes[0], "params", "parameters"), (axes[1], "flops", "FLOPs per image")):
        for index, setting in enumerate(shown):
            x = getattr(setting, attribute)
            ax.errorbar(x, 100 * setting.mean("test_accuracy"), yerr=_spread(setting, "test_accuracy", 100), fmt="o",
                        color=_color(index), capsize=4, label=setting.label)
            ax.annotate(setting.label, (x, 100 * setting.mean("test_accuracy")), textcoords="offset points",
                        xytext=(6, 4), fontsize=8)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        values = [getattr(s, attribute) for s in shown]
        ax.set_xlim(min(values) / 1.6, max(values) * 1.6)
        ax.set_xlabel(name)
    axes[0].set_ylabel("test accuracy (%)")
    fig.suptitle(f"{study.title}: test accuracy (mean ± 1 sample std over seeds) against model size and compute")
    return save(fig, path)


def study_time(study: StudySummary, path: Path) -> Path:
    shown = [s for s in study.settings if s.n]
    fig, ax = plt.subplots(figsize=(max(4.5, 1.6 * len(shown) + 2), 3.4))
    means = [s.seconds_per_epoch for s in shown]
    stds = [s.std("mean_seconds_per_epoch") if s.n > 1 else np.nan for s in shown]
    ax.bar([_tick(s) for s in shown], means, yerr=stds, capsize=4, color=[_color(i) for i in range(len(shown))])
    ax.set_ylabel("seconds per epoch")
    ax.set_title(f"{study.title}: training time per epoch (bar = mean, error bar = ±1 sample std over n seeds)")
    return save(fig, path)
