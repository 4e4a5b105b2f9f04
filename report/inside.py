"""Figures that need a trained model (the model.keras of a run's model_dir): the first layer's
filters, feature maps of one test image per class after each conv block, Grad-CAM heat maps, and
the most confident mistakes on the test set."""
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


def one_per_class(labels: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> list[int]:
    """For each class in turn, its first test image the model classifies right (else its first one);
    classes without test images are left out."""
    right = probabilities.argmax(axis=1) == labels
    picks = []
    for index in range(len(classes)):
        members = np.flatnonzero(labels == index)
        if len(members):
            correct = members[right[members]]
            picks.append(int(correct[0] if len(correct) else members[0]))
    return picks


def _gray(ax, image: np.ndarray) -> None:
    ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray")


def class_feature_maps(model, images: np.ndarray, picks: list[int], names: list[str], path: Path,
                       per_block: int = 4) -> tuple[Path, list[str]]:
    """One row per picked image: the image, then after each conv block the `per_block` channels most
    active on average over the picked images (the same channels in every row); returns the figure and
    each block's output size ("14x14x32")."""
    import keras

    ends = block_ends(model)
    probe = keras.Model(model.inputs, [model.get_layer(name).output for name in ends])
    outputs = probe([images[picks].astype(np.float32) / 255.0], training=False)
    outputs = [np.asarray(o) for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]
    chosen = [np.argsort(-o.mean(axis=(0, 1, 2)), kind="stable")[:per_block] for o in outputs]
    cols = 1 + sum(len(c) for c in chosen)
    fig, axes = plt.subplots(len(picks), cols, figsize=(cols * 0.95, len(picks) * 1.0 + 0.6), squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for row, index in enumerate(picks):
        _gray(axes[row, 0], images[index])
        axes[row, 0].set_ylabel(names[row], fontsize=7)
        col = 1
        for name, output, channels in zip(ends, outputs, chosen):
            for channel in channels:
                axes[row, col].imshow(output[row, :, :, channel], cmap="viridis")
                if row == 0:
                    axes[row, col].set_title(f"{name}\n#{channel}", fontsize=6)
                col += 1
    sizes = ["x".join(str(d) for d in o.shape[1:]) for o in outputs]
    fig.suptitle(f"Feature maps of one test image per class after each conv block ({', '.join(sizes)}); "
                 f"the {per_block} channels of each block most active over these images")
    return save(fig, path), sizes


def grad_cam(model, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM of the predicted class: the last conv block's output weighted by the mean gradient of the
    class score (the logit) with respect to it, ReLU, scaled to 0-1 and resized to the image; returns
    (heat maps (N, H, W), predicted classes)."""
    import keras
    import tensorflow as tf

    last = block_ends(model)[-1]
    probe = keras.Model(model.inputs, [model.get_layer(last).output, model.get_layer("logits").output])
    batch = tf.constant(images.astype(np.float32) / 255.0)
    with tf.GradientTape() as tape:
        maps, logits = probe(batch, training=False)
        predicted = tf.argmax(logits, axis=1)
        scores = tf.gather(logits, predicted, axis=1, batch_dims=1)
    gradients = tape.gradient(scores, maps)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    cams = tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1))
    cams = cams / tf.maximum(tf.reduce_max(cams, axis=(1, 2), keepdims=True), 1e-12)
    resized = tf.image.resize(cams[..., None], images.shape[1:3], method="bilinear")[..., 0]
    return np.asarray(resized), np.asarray(predicted)


def grad_cam_figure(images: np.ndarray, heat: np.ndarray, titles: list[str], layer: str, path: Path) -> Path:
    """Each image above its Grad-CAM heat map laid over it."""
    fig, axes = plt.subplots(2, len(images), figsize=(len(images) * 1.1, 2.9), squeeze=False)
    for col, (image, cam, title) in enumerate(zip(images, heat, titles)):
        for row in range(2):
            axes[row, col].set_xticks([])
            axes[row, col].set_yticks([])
            _gray(axes[row, col], image)
        axes[1, col].imshow(cam, cmap="jet", alpha=0.5, vmin=0, vmax=1)
        axes[0, col].set_title(title, fontsize=6)
    fig.suptitle(f"Grad-CAM: where the predicted class's score depends on the output of {layer} "
                 "(red = most)")
    return save(fig, path)


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
