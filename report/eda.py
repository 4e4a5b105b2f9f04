"""Exploratory data analysis of an image classification data set, from its raw uint8 arrays."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .plotting import plt, save


def dataset_stats(train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray,
                  test_labels: np.ndarray, classes: list[str]) -> dict:
    """Counts, shape and pixel statistics; every number the report's data section quotes."""
    num = len(classes)
    train_counts = np.bincount(train_labels, minlength=num)
    test_counts = np.bincount(test_labels, minlength=num)
    pixels = train_images.astype(np.float64)
    return {
        "num_train": int(len(train_labels)), "num_test": int(len(test_labels)), "num_classes": num,
        "image_shape": [int(d) for d in train_images.shape[1:]],
        "train_counts": [int(c) for c in train_counts], "test_counts": [int(c) for c in test_counts],
        "balanced": bool(train_counts.min() == train_counts.max() and test_counts.min() == test_counts.max()),
        "pixel_mean": float(pixels.mean()), "pixel_std": float(pixels.std()),
        "zero_fraction": float((train_images == 0).mean()),
        "brightest_class": classes[int(np.argmax([pixels[train_labels == c].mean() for c in range(num)]))],
        "darkest_class": classes[int(np.argmin([pixels[train_labels == c].mean() for c in range(num)]))],
    }


def class_distribution(train_labels: np.ndarray, test_labels: np.ndarray, classes: list[str], path: Path) -> Path:
    num = len(classes)
    positions = np.arange(num)
    fig, ax = plt.subplots(figsize=(9, 3.6))
    for offset, labels, name in ((-0.2, train_labels, "train"), (0.2, test_labels, "test")):
        counts = np.bincount(labels, minlength=num)
        ax.bar(positions + offset, counts, width=0.4, label=f"{name} ({len(labels):,})")
    ax.set_xticks(positions, classes, rotation=30, ha="right")
    ax.set_ylabel("images")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.18)
    ax.set_title("Class distribution")
    ax.legend(loc="upper center", ncol=2)
    return save(fig, path)


def _show(ax, image: np.ndarray, cmap="gray") -> None:
    """A 0..255 image: one channel through `cmap`, colour as it is (matplotlib ignores vmin and vmax
    for RGB and reads floats as 0..1, so a float colour image is scaled down first)."""
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap=cmap, vmin=0, vmax=255)
    else:
        ax.imshow(np.clip(np.asarray(image, np.float64) / 255.0, 0.0, 1.0))
    ax.set_xticks([])
    ax.set_yticks([])


def sample_grid(images: np.ndarray, labels: np.ndarray, classes: list[str], path: Path, per_class: int = 8) -> Path:
    """The first `per_class` images of each class, one row per class."""
    fig, axes = plt.subplots(len(classes), per_class, figsize=(per_class * 0.9, len(classes) * 0.95))
    axes = np.atleast_2d(axes)
    for row, name in enumerate(classes):
        picks = np.flatnonzero(labels == row)[:per_class]
        for col in range(per_class):
            ax = axes[row, col]
            if col < len(picks):
                _show(ax, images[picks[col]])
            else:
                ax.axis("off")
        axes[row, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle("Sample images per class")
    return save(fig, path)


def mean_images(images: np.ndarray, labels: np.ndarray, classes: list[str], path: Path) -> Path:
    cols = min(5, len(classes))
    rows = -(-len(classes) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.8, rows * 2.2))
    axes = np.atleast_1d(axes).ravel()
    for index, ax in enumerate(axes):
        if index >= len(classes):
            ax.axis("off")
            continue
        members = images[labels == index]
        mean = members.astype(np.float64).mean(axis=0) if len(members) else np.zeros(images.shape[1:])
        _show(ax, mean, cmap="magma")
        ax.set_title(classes[index], fontsize=8)
    fig.suptitle("Mean image per class (train)")
    return save(fig, path)


def pixel_histogram(train_images: np.ndarray, test_images: np.ndarray, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 3.4))
    bins = np.arange(257)
    for images, name in ((train_images, "train"), (test_images, "test")):
        counts = np.bincount(images.ravel(), minlength=256)
        ax.stairs(counts / counts.sum(), bins, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("pixel intensity (0-255)")
    ax.set_ylabel("fraction of pixels")
    ax.set_title("Pixel intensity histogram")
    ax.legend()
    return save(fig, path)
