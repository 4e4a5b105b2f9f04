"""Channels: detect which format a channel directory (or single file) holds and read one split of it."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import cifar, csvfmt, folder, idx, npz
from .base import DataError, ImageSet, check_label_range, is_digit_names, name_classes

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
TRAIN_CHANNELS = ("train", "training")
TEST_CHANNEL = "test"
FORMATS_HELP = ("IDX (train-images-idx3-ubyte[.gz] + train-labels-idx1-ubyte[.gz], t10k-* for test), "
                ".npz (x_train, y_train, x_test, y_test or x, y), .csv (label,pixel1..pixelN), "
                "image folders (<class>/*.png|jpg), CIFAR-10 python batches (data_batch_N, test_batch)")
TEST_HINTS = {idx.NAME: "t10k-images/t10k-labels files", npz.NAME: "x_test and y_test arrays",
              csvfmt.NAME: "a CSV file with 'test' in its name", cifar.NAME: "test_batch",
              folder.NAME: "a test/<class>/ folder"}
TRAIN_HINTS = {idx.NAME: "train-images/train-labels files", npz.NAME: "x_train and y_train (or x and y) arrays",
               csvfmt.NAME: "a CSV file without 'test' in its name", cifar.NAME: "data_batch_N files",
               folder.NAME: "<class>/ or train/<class>/ folders"}
DESCRIPTIONS = {idx.NAME: "IDX files", npz.NAME: ".npz files", csvfmt.NAME: "CSV files",
                cifar.NAME: "CIFAR-10 batches", folder.NAME: "image folders"}
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                       "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@dataclass
class Layout:
    root: Path
    fmt: str
    splits: dict
    single_file: bool


def _detect_files(root: Path, files: list[Path]) -> dict[str, dict]:
    found = {
        idx.NAME: idx.find_pairs(root, files),
        npz.NAME: npz.find_entries(root, files),
        csvfmt.NAME: csvfmt.find_files(root, files),
        cifar.NAME: cifar.find_batches(root, files),
    }
    return {name: splits for name, splits in found.items() if splits}


def detect(path) -> Layout:
    """The format and splits a channel directory or file holds; DataError when it is none of them."""
    path = Path(path)
    if path.is_file():
        found = _detect_files(path.parent, [path])
        if not found:
            raise DataError(f"{path}: not a recognised data file; expected one of: {FORMATS_HELP}")
        (fmt, splits), = found.items()
        return Layout(path.parent, fmt, splits, single_file=True)
    if not path.is_dir():
        raise DataError(f"{path}: channel directory does not exist")
    entries = [p for p in path.iterdir() if not p.name.startswith(".")]
    files = sorted(p for p in entries if p.is_file())
    dirs = sorted(p for p in entries if p.is_dir())
    if not files and not dirs:
        raise DataError(f"{path}: channel directory is empty")
    found = _detect_files(path, files)
    tree = folder.find_roots(path)
    if tree:
        found[folder.NAME] = tree
    if len(found) > 1:
        raise DataError(f"{path}: holds several formats ({', '.join(sorted(found))}); "
                        "a channel must hold one")
    if found:
        (fmt, splits), = found.items()
        return Layout(path, fmt, splits, single_file=False)
    if len(dirs) == 1:
        return detect(dirs[0])
    shown = ", ".join(p.name + ("/" if p.is_dir() else "") for p in (files + dirs)[:6])
    more = f" and {len(files) + len(dirs) - 6} more" if len(files) + len(dirs) > 6 else ""
    raise DataError(f"{path}: no readable data among {shown}{more}; expected one of: {FORMATS_HELP}")


def has_split(path, split: str) -> bool:
    """Whether the channel holds data for split ("train" or "test")."""
    _check_split(split)
    path = Path(path)
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return False
    return split in detect(path).splits


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split {split!r}; expected one of {SPLITS}")


def _source(root: Path, files: list[Path]) -> str:
    names = sorted({str(f.relative_to(root)) if f.is_relative_to(root) else str(f) for f in files})
    return f"{root} [{', '.join(names)}]" if names else str(root)


def _followed(path: Path) -> Path:
    """The channel where a link points: a linked folder, or a folder holding only a link to one file
    (as local mode lays out a single-file channel), so messages name the user's own files."""
    if path.is_symlink():
        return path.resolve()
    if path.is_dir():
        entries = [p for p in path.iterdir() if not p.name.startswith(".")]
        if len(entries) == 1 and entries[0].is_symlink() and entries[0].is_file():
            return entries[0].resolve()
    return path


def read_channel(path, split: str = "train", image_size: tuple[int, int] | None = None,
                 mode: str | None = None, resize_arrays: bool = True) -> ImageSet:
    """Read one split of a channel directory (or a single data file) whatever its format.

    A single file that holds only one split is read whichever split is asked for. Image folders are
    given one size (height, width; default their most common) and colour mode ("L" or "RGB"), other
    formats image_size too unless resize_arrays is false. A
    channel that is a link (local mode links the user's folder) is read, and named, where it points.
    """
    _check_split(split)
    path = _followed(Path(path))
    layout = detect(path)
    if split not in layout.splits:
        if layout.single_file and len(layout.splits) == 1:
            split = next(iter(layout.splits))
        else:
            hint = (TEST_HINTS if split == "test" else TRAIN_HINTS)[layout.fmt]
            raise DataError(f"{path}: no {split} data: the {DESCRIPTIONS[layout.fmt]} there hold only "
                            f"{' and '.join(sorted(layout.splits))} data; expected {hint}")
    entries, root = layout.splits[split], layout.root
    if layout.fmt == folder.NAME:
        size = (image_size[1], image_size[0]) if image_size else None
        images, labels, classes = folder.read_tree(entries, size, mode)
        source = str(entries)
    elif layout.fmt == cifar.NAME:
        images, labels, classes, files = cifar.read_batches(root, entries)
        source = _source(root, files)
    else:
        reader = {idx.NAME: idx.read_pairs, npz.NAME: npz.read_entries,
                  csvfmt.NAME: csvfmt.read_files}[layout.fmt]
        images, labels, files = reader(entries)
        source = _source(root, files)
        classes = name_classes(labels, images.shape[1:], root, files, source)
    if len(images) == 0:
        raise DataError(f"{source}: no images")
    if image_size and resize_arrays and layout.fmt != folder.NAME and tuple(images.shape[1:3]) != tuple(image_size):
        images = _resize(images, image_size)
        log.info("%s: resized %d images to %dx%d (the image_size hyperparameter)", source, len(images), *image_size)
    log.info("read %d %s images of %s in %d classes from %s",
             len(images), split, "x".join(map(str, images.shape[1:])), len(classes), source)
    return ImageSet(images, labels, classes, source)


def peek_shape(path, image_size: tuple[int, int] | None = None) -> tuple[int, int, int] | None:
    """(height, width, channels) of the training images, read cheaply (file headers only) for the
    formats that allow it, so a model that does not fit them is refused before any pixel is read;
    None where that would mean reading the data."""
    layout = detect(path)
    if "train" not in layout.splits:
        return None
    entries = layout.splits["train"]
    if layout.fmt == folder.NAME:
        size = (image_size[1], image_size[0]) if image_size else None
        return folder.peek_shape(entries, size)
    shape = idx.peek_shape(entries) if layout.fmt == idx.NAME else (32, 32, 3) if layout.fmt == cifar.NAME else None
    if shape and image_size:
        shape = (image_size[0], image_size[1], shape[2])
    return shape


def _resize(images: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """(N, H, W, C) uint8 resized to image_size (height, width), bilinear as the serving preprocessing."""
    from PIL import Image

    height, width = image_size
    out = np.empty((len(images), height, width, images.shape[-1]), dtype=np.uint8)
    for i, image in enumerate(images):
        pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        out[i] = np.asarray(pil.resize((width, height), Image.BILINEAR)).reshape(height, width, -1)
    return out


def _agree(train: ImageSet, test: ImageSet) -> tuple[ImageSet, ImageSet]:
    """Make train and test speak of one image shape and one list of classes."""
    if train.image_shape != test.image_shape:
        raise DataError(f"test images in {test.source} are {'x'.join(map(str, test.image_shape))} but "
                        f"training images in {train.source} are {'x'.join(map(str, train.image_shape))}; "
                        "both must have one shape (height x width x channels)")
    if train.classes == test.classes:
        return train, test
    # "0".."K-1" names carry no information: the other side's names (or the longer range) win
    if is_digit_names(train.classes) and len(test.classes) >= len(train.classes):
        check_label_range(train.labels, len(test.classes), train.source, f"classes of {test.source}")
        train.classes = list(test.classes)
        return train, test
    if is_digit_names(test.classes) and len(train.classes) >= len(test.classes):
        check_label_range(test.labels, len(train.classes), test.source, f"classes of {train.source}")
        test.classes = list(train.classes)
        return train, test
    only_train = [c for c in train.classes if c not in test.classes][:5]
    only_test = [c for c in test.classes if c not in train.classes][:5]
    raise DataError(f"classes differ: training data {train.source} has {len(train.classes)} "
                    f"{train.classes[:10]}, test data {test.source} has {len(test.classes)} "
                    f"{test.classes[:10]} (only in training: {only_train}, only in test: {only_test})")


def parse_class_names(text: str) -> list[str]:
    """The class_names hyperparameter: names in label order, comma-separated."""
    names = [part.strip() for part in str(text).split(",")]
    if len(names) < 2 or not all(names) or len(set(names)) != len(names):
        raise DataError(f"hyperparameter 'class_names': expected at least two distinct non-empty names, "
                        f"comma-separated in label order (e.g. cat,dog); got {text!r}")
    return names


def _check_name_count(image_set: ImageSet, names: list[str]) -> None:
    """class_names must name each class of the data once: as many names as its classes (data that
    carries only class ids may have more classes than its largest label shows, never fewer)."""
    have = len(image_set.classes)
    if len(names) == have or (len(names) > have and is_digit_names(image_set.classes)):
        return
    shown = ", ".join(image_set.classes[:12]) + (", ..." if have > 12 else "")
    raise DataError(f"hyperparameter 'class_names': {len(names)} names ({', '.join(names)}) for the {have} "
                    f"classes of {image_set.source} ({shown}); expected {have} names, comma-separated in label order")


def _name_by_hyperparameter(sets: list[ImageSet], names: list[str]) -> None:
    _check_name_count(sets[0], names)
    for image_set in sets:
        check_label_range(image_set.labels, len(names), image_set.source,
                          f"{len(names)} classes named by the class_names hyperparameter")
        if not is_digit_names(image_set.classes) and image_set.classes != names:
            log.warning("class_names hyperparameter replaces the names %s of %s",
                        image_set.classes[:10], image_set.source)
        image_set.classes = list(names)
    log.info("class names from the class_names hyperparameter: %s", ", ".join(names))


def load_channels(channels: dict[str, str], class_names: str = "",
                  image_size: tuple[int, int] | None = None) -> tuple[ImageSet, ImageSet | None]:
    """(train, test or None) from SageMaker channels: "train" or "training", and optional "test".

    Without a test channel, test files found in the training channel are the test set. class_names
    (comma-separated) names the classes, whatever names the data carries. Image folders are resized to
    image_size (height, width), else to the training images' most common size; test images take the
    training images' size and colour mode.
    """
    given = [name for name in TRAIN_CHANNELS if name in channels]
    if not given:
        raise DataError(f"no training channel among the channels given {sorted(channels)}; "
                        f"expected one named {' or '.join(repr(n) for n in TRAIN_CHANNELS)}")
    if len(given) > 1:
        raise DataError(f"both 'train' ({channels['train']}) and 'training' ({channels['training']}) "
                        "channels given; expected one training channel")
    train_dir = channels[given[0]]
    train = read_channel(train_dir, "train", image_size)
    height, width, depth = train.image_shape
    like = {"image_size": (height, width), "mode": "L" if depth == 1 else "RGB", "resize_arrays": bool(image_size)}
    test: ImageSet | None = None
    test_dir = channels.get(TEST_CHANNEL)
    if test_dir is not None:
        test = read_channel(test_dir, "test" if has_split(test_dir, "test") else "train", **like)
    elif has_split(train_dir, "test"):
        test = read_channel(train_dir, "test", **like)
    if class_names:
        _name_by_hyperparameter([train] + ([test] if test is not None else []), parse_class_names(class_names))
    if test is None:
        return train, None
    train, test = _agree(train, test)
    return train, test


def find_fashion_mnist() -> Path | None:
    """The folder holding Fashion-MNIST's four IDX .gz files: the Debian package's, else Keras's cache."""
    candidates = [DEBIAN_FASHION_MNIST]
    if os.environ.get("KERAS_HOME"):
        candidates.append(Path(os.environ["KERAS_HOME"]) / "datasets" / "fashion-mnist")
    candidates.append(Path.home() / ".keras" / "datasets" / "fashion-mnist")
    for candidate in candidates:
        if all((candidate / name).is_file() for name in FASHION_MNIST_FILES):
            return candidate
    return None

