"""The report's data figures for an RGB folder data set: the mean image per class shows each
class's colour, as the sample grid shows the images."""
from __future__ import annotations

import numpy as np
from PIL import Image

from training.data import load_channels

COLOURS = {"reds": (200, 30, 30), "blues": (30, 30, 200)}


def rgb_folder(root):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name, colour in COLOURS.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(12):
                noise = rng.integers(-20, 21, (16, 16, 3))
                pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels, "RGB").save(folder / f"{index}.png")
    return root


def test_the_mean_image_of_rgb_data_shows_the_colours(tmp_path):
    from report import eda

    root = rgb_folder(tmp_path / "data")
    train, _ = load_channels({"train": str(root / "train"), "test": str(root / "test")})
    assert train.images.shape[1:] == (16, 16, 3)
    path = eda.mean_images(train.images, train.labels, list(train.classes), tmp_path / "mean.png")
    pixels = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3).astype(int)
    red = ((pixels[:, 0] > 150) & (pixels[:, 1] < 80) & (pixels[:, 2] < 80)).sum()
    blue = ((pixels[:, 2] > 150) & (pixels[:, 0] < 80) & (pixels[:, 1] < 80)).sum()
    assert red > 1000 and blue > 1000, (red, blue)
