"""The lab's "new photos" figure: a trained model on photo-like versions of test images (a garment on
a light table, tinted, off-centre, in a wider frame, as a JPEG; convlab.photos.photo_like, seeded),
served through the same handler code as every serving path, against the same images as plain tiles."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .plotting import plt, save

SHOWN = 8  # photos in the figure
SCORED = 1000  # test images scored plain and as photos
SEED = 0


def new_photos(model_dir: Path, images: np.ndarray, labels: np.ndarray, classes: list[str], path: Path) -> dict:
    """Draw the figure to `path`; return its numbers: accuracy on the first SCORED test images as
    plain PNG tiles, as photo-like JPEGs (mapped into the model's domain) and with the mapping off."""
    from PIL import Image

    from convlab.photos import accuracy_plain_vs_photo, photo_like
    from inference import handler
    from inference.context import RequestContext

    images, labels = images[:SCORED], np.asarray(labels[:SCORED])
    scores = accuracy_plain_vs_photo(model_dir, images, labels, seed=SEED)
    model = handler.model_fn(str(model_dir))
    picks = [int(np.flatnonzero(labels == c)[0]) for c in range(len(classes)) if (labels == c).any()][:SHOWN]
    fig, axes = plt.subplots(1, len(picks), figsize=(2.1 * len(picks), 2.4))
    for ax, index in zip(np.atleast_1d(axes), picks):
        body = photo_like(images[index], SEED, index)
        context = RequestContext("image/jpeg", "application/json", None, model=model)
        batch = handler.input_fn(body, "image/jpeg", context=context)
        predicted = int(np.argmax(handler.predict_fn(batch, model)["probabilities"][0]))
        ax.imshow(Image.open(io.BytesIO(body)).convert("RGB"))
        mark = "right" if predicted == labels[index] else f"wrong: {classes[labels[index]]}"
        ax.set_title(f"{classes[predicted]}\n({mark})", fontsize=8)
        ax.axis("off")
    save(fig, path)
    return {"images": scores["images"], "plain": round(scores["plain"], 4), "photo": round(scores["photo"], 4),
            "photo_unmapped": round(scores["photo_unmapped"], 4), "seed": SEED,
            "shown_test_indices": picks}
