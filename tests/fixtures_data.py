"""Data and model fixtures: real Fashion-MNIST, a small subset in its real IDX format, and a CNN
trained on it through the real entry point once per test session."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SUBSET_TRAIN = 6000
SUBSET_TEST = 1000
SMALL_CNN = {"model": "cnn", "depth": 2, "filters": 16, "dense": "64", "epochs": 1, "batch_size": 64,
             "seed": 7, "verbose": 0}


@pytest.fixture(scope="session")
def fashion_mnist_dir():
    from training.data import find_fashion_mnist

    path = find_fashion_mnist()
    if path is None:
        pytest.skip("Fashion-MNIST is not installed (make test installs it: scripts/get_fashion_mnist.sh)")
    return path


@pytest.fixture(scope="session")
def fashion_mnist(fashion_mnist_dir):
    """(train ImageSet, test ImageSet) of the full real data set."""
    from training.data import read_channel

    return read_channel(fashion_mnist_dir, "train"), read_channel(fashion_mnist_dir, "test")


@pytest.fixture(scope="session")
def fashion_subset_dir(fashion_mnist, tmp_path_factory):
    """A stratified 6,000/1,000 subset of Fashion-MNIST written as gzipped IDX files."""
    from training.data import stratified_split, write_idx

    train, test = fashion_mnist
    dest = tmp_path_factory.mktemp("fashion-mnist-subset")
    _, keep = stratified_split(train.labels, SUBSET_TRAIN / len(train.labels), 0)
    write_idx(dest, train.images[keep], train.labels[keep], prefix="train")
    write_idx(dest, test.images[:SUBSET_TEST], test.labels[:SUBSET_TEST], prefix="t10k")
    return dest


@pytest.fixture(scope="session")
def fashion_test_images(fashion_mnist):
    """Real Fashion-MNIST test images (uint8, (N, 28, 28, 1)) and labels, not seen in training."""
    _, test = fashion_mnist
    return test.images[SUBSET_TEST:SUBSET_TEST + 500], test.labels[SUBSET_TEST:SUBSET_TEST + 500]


@pytest.fixture(scope="session")
def trained_model_dir(fashion_subset_dir, tmp_path_factory):
    """A CNN trained for one epoch on the subset through run_training; model_dir per docs/model_dir.md."""
    from training.train import run_training

    model_dir = tmp_path_factory.mktemp("trained") / "model"
    run_training(dict(SMALL_CNN), {"train": str(fashion_subset_dir)}, str(model_dir))
    return model_dir


def png_bytes(image: np.ndarray) -> bytes:
    """A uint8 (H, W, 1) or (H, W, 3) image encoded as PNG."""
    import io

    from PIL import Image

    array = image[..., 0] if image.shape[-1] == 1 else image
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()
