"""A few of the model's own test images saved into the model_dir for the try-it page of `convlab serve`:
the first test image of each class (classes in order, at most MAX_SAMPLES), as PNG files in `samples/`
with `samples/samples.json` naming each file's class (docs/model_dir.md)."""
from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np

MAX_SAMPLES = 12
FOLDER = "samples"


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(name).lower()).strip("-")[:40] or "class"


def export_samples(images: np.ndarray, labels: np.ndarray, classes: list[str], model_dir: Path) -> list[dict]:
    """Write samples/NN-<class>.png and samples/samples.json; return the entries written."""
    from PIL import Image

    folder = Path(model_dir) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for index, name in enumerate(classes[:MAX_SAMPLES]):
        found = np.flatnonzero(np.asarray(labels) == index)
        if not len(found):
            continue
        image = np.asarray(images[found[0]], dtype=np.uint8)
        picture = Image.fromarray(image[..., 0], "L") if image.shape[-1] == 1 else Image.fromarray(image, "RGB")
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        file = f"{index:02d}-{_slug(name)}.png"
        (folder / file).write_bytes(buffer.getvalue())
        entries.append({"file": file, "label": str(name), "class_index": index})
    (folder / "samples.json").write_text(json.dumps({"samples": entries}, indent=2))
    return entries
