"""Figures that need a trained model (the model.keras of a run's model_dir): the first layer's
filters, the feature maps of one test image after each conv block, and misclassified test images."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from training.explain_export import block_ends

from .plotting import plt, save


def load_model(model_dir: Path):
    import keras

    return keras.saving.load_model(Path(model_dir) / "model.keras", compile=False)


def run_test_set(record: dict, channels: dict[str, str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The exact test images and labels the run was scored on (same subset, same seed)."""
    from training.hyperparameters import parse_hyperparameters
    from training.train import prepare_data

    params, _ = parse_hyperparameters(record["hyperparameters"])
    data = prepare_data(channels, params)
    images, labels = data["test"]
    return images, labels, data["classes"]


def predict(model, images: np.ndarray, rescale: float = 1.0 / 255.0, batch: int = 512) -> np.ndarray:
    out = [np.asarray(model(images[i:i + batch].astype(np.float32) * rescale, training=False))
           for i in range(0, len(images), batch)]
    return np.concatenate(out)


def first_layer_filters(model, path: Path) -> Path:
    kernel = np.asarray(model.get_layer("block1_conv1").kernel)  # (k, k, channels, filters)
    filters = kernel.shape[-1]
    cols = min(8, filters)
    rows = -(-filters // cols)
    limit = float(np.abs(kernel).max()) or 1.0
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.15 + 0.5))
    axes = np.atleast_1d(axes).ravel()
    for index, ax in enumerate(axes):
        ax.set_xticks([])
        ax.set_yticks([])
        if index >= filters:
            ax.axis("off")
            continue
        weights = kernel[:, :, :, index].mean(axis=2)
        ax.imshow(weights, cmap="RdBu_r", vmin=-limit, vmax=limit)
    fig.suptitle(f"First-layer filters ({kernel.shape[0]}x{kernel.shape[1]}, {filters} filters; red = positive "
                 "weight, blue = negative)")
    return save(fig, path)


def feature_maps(model, image: np.ndarray, title: str, path: Path, per_block: int = 8) -> tuple[Path, list[str]]:
    """The input image, then the `per_block` most active channels after each conv block; returns the
    figure and each block's output size ("14x14x32")."""
    import keras

    ends = block_ends(model)
    probe = keras.Model(model.inputs, [model.get_layer(name).output for name in ends])
    outputs = probe([image[None].astype(np.float32) / 255.0], training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    fig, axes = plt.subplots(len(ends) + 1, per_block, figsize=(per_block * 1.15, (len(ends) + 1) * 1.35))
    axes = np.atleast_2d(axes)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        ax.axis("off")
    axes[0, 0].imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray")
    axes[0, 0].set_title("input", fontsize=7)
    axes[0, 0].axis("on")
    for row, (name, output) in enumerate(zip(ends, outputs), start=1):
        maps = np.asarray(output)[0]
        order = np.argsort(-maps.mean(axis=(0, 1)), kind="stable")[:per_block]
        for col, channel in enumerate(order):
            ax = axes[row, col]
            ax.axis("on")
            ax.imshow(maps[:, :, channel], cmap="viridis")
            ax.set_title(f"{name} #{channel}", fontsize=6)
    sizes = ["x".join(str(d) for d in np.asarray(output).shape[1:]) for output in outputs]
    fig.suptitle(f"{title}: feature maps after each conv block ({', '.join(sizes)}), most active channels")
    return save(fig, path), sizes


def misclassified(images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, classes: list[str],
                  path: Path, limit: int = 24) -> tuple[Path, int]:
    """The most confident mistakes on the test set; returns the figure and the number of mistakes."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probabilities[wrong, predicted[wrong]]
    picks = wrong[np.argsort(-confidence, kind="stable")][:limit]
    cols = 8
    rows = max(1, -(-len(picks) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.35, rows * 1.65))
    axes = np.atleast_1d(axes).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, index in zip(axes, picks):
        image = images[index]
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray")
        ax.set_title(f"true: {classes[labels[index]]}\npred: {classes[predicted[index]]} "
                     f"({probabilities[index, predicted[index]]:.2f})", fontsize=6)
    fig.suptitle(f"Most confident mistakes ({len(wrong)} of {len(labels)} test images misclassified)")
    return save(fig, path), int(len(wrong))
