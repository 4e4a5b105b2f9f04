"""Accuracy of batch predictions whose inputs sit in one folder per class.

Inputs laid out as `<anything>/<class folder>/<file>` (the ImageFolder convention) name their
true class by the folder: the class name with characters other than letters, digits, '.', '_'
and '-' replaced by '_' ("T-shirt/top" -> "T-shirt_top"), or the class index ("0".."9").
Each `.out` holds the handler's JSON: {"predictions": [{"label", "class_index", ...}]}.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath
from typing import Any, Iterable

from deploy.stores import OUT_SUFFIX, LocalStore, S3Store


def class_folder(name: str) -> str:
    """The folder name that stands for class `name`."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def true_class(relative: str, classes: list[str]) -> int | None:
    """The class index named by the input's parent folder, or None when it names none."""
    parts = PurePosixPath(relative).parts
    if len(parts) < 2:
        return None
    folder = parts[-2]
    if folder.isdigit() and int(folder) < len(classes):
        return int(folder)
    names = {class_folder(c): i for i, c in enumerate(classes)}
    return names.get(folder)


def predicted_class(body: bytes) -> int:
    """The class index in one `.out` body (convlab's JSON answer for one image)."""
    data = json.loads(body)
    return int(data["predictions"][0]["class_index"])


@dataclass
class Score:
    scored: int = 0
    correct: int = 0
    unlabelled: int = 0
    confusion: list[list[int]] = field(default_factory=list)

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.scored if self.scored else None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "accuracy": self.accuracy}


def score_outputs(pairs: Iterable[tuple[str, bytes]], classes: list[str]) -> Score:
    """Score (relative input key, `.out` body) pairs against their class folders."""
    score = Score(confusion=[[0] * len(classes) for _ in classes])
    for relative, body in pairs:
        truth = true_class(relative, classes)
        if truth is None:
            score.unlabelled += 1
            continue
        guess = predicted_class(body)
        score.scored += 1
        score.correct += int(guess == truth)
        score.confusion[truth][guess] += 1
    return score


def read_outputs(store: S3Store | LocalStore) -> Iterable[tuple[str, bytes]]:
    """(relative input key, body) for every `.out` in an output store."""
    for item in store.items():
        if item.relative.endswith(OUT_SUFFIX):
            yield item.relative[:-len(OUT_SUFFIX)], store.read(item.relative)


def write_image_folder(images: Any, labels: Any, classes: list[str], dest: Any,
                       stem: str = "image") -> list[str]:
    """Write uint8 images (N, H, W, C) as PNGs under `dest/<class folder>/<stem>-<n>.png`."""
    from pathlib import Path

    import numpy as np
    from PIL import Image

    root = Path(dest)
    written = []
    for index, (image, label) in enumerate(zip(np.asarray(images), np.asarray(labels))):
        array = image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image
        path = root / class_folder(classes[int(label)]) / f"{stem}-{index:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path, format="PNG")
        written.append(path.relative_to(root).as_posix())
    return written
