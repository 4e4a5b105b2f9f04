"""Dataset readers on files written in each format's real layout, real Fashion-MNIST, and bad input."""
from __future__ import annotations

import gzip
import json
import os
import pickle
import re
import shlex
import struct

import numpy as np
import pytest
from PIL import Image

from training.data import (FASHION_MNIST_CLASSES, DataError, find_fashion_mnist, has_split, load_channels,
                           read_channel, stratified_split, write_idx)
from training.data import channels as channels_module

RNG = np.random.default_rng(11)


def _images(n, h=28, w=28, c=1):
    return RNG.integers(0, 256, (n, h, w, c), dtype=np.uint8)


def _labels(n, k=10):
    return np.arange(n) % k


# --- IDX -------------------------------------------------------------------------------------------

def _idx(array, type_code=0x08):
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_idx_pair(folder, prefix, images, labels, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    opener = gzip.open if gz else open
    with opener(folder / f"{prefix}-images-idx3-ubyte{suffix}", "wb") as fh:
        fh.write(_idx(images[..., 0]))
    with opener(folder / f"{prefix}-labels-idx1-ubyte{suffix}", "wb") as fh:
        fh.write(_idx(labels))


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
def test_idx_reads_both_splits_of_one_channel(tmp_path, gz):
    train_x, test_x = _images(30), _images(12)
    _write_idx_pair(tmp_path / "ch", "train", train_x, _labels(30), gz)
    _write_idx_pair(tmp_path / "ch", "t10k", test_x, _labels(12, 4), gz)
    train, test = read_channel(tmp_path / "ch", "train"), read_channel(tmp_path / "ch", "test")
    assert train.images.dtype == np.uint8 and train.images.shape == (30, 28, 28, 1)
    assert train.images.flags.writeable and train.images.flags.c_contiguous
    np.testing.assert_array_equal(train.images, train_x)
    np.testing.assert_array_equal(test.images, test_x)
    assert train.labels.dtype == np.int64 and list(test.labels) == list(_labels(12, 4))
    assert train.classes == [str(i) for i in range(10)]  # no name says Fashion-MNIST
    assert "train-images-idx3-ubyte" in train.source
    assert has_split(tmp_path / "ch", "test") and has_split(tmp_path / "ch", "train")


def test_idx_single_file_finds_its_labels_and_write_idx_round_trips(tmp_path):
    images, labels = _images(9, 5, 7, 3), _labels(9, 3)
    image_path, label_path = write_idx(tmp_path / "rgb", images, labels, prefix="t10k", gzip=False)
    assert image_path.name == "t10k-images-idx4-ubyte" and label_path.name == "t10k-labels-idx1-ubyte"
    got = read_channel(image_path)
    np.testing.assert_array_equal(got.images, images)
    np.testing.assert_array_equal(got.labels, labels)
    write_idx(tmp_path / "named", _images(4)[..., 0], [0, 1, 2, 1], classes=["cat", "dog", "eel"])
    assert read_channel(tmp_path / "named").classes == ["cat", "dog", "eel"]


def test_fashion_names_come_from_names_not_from_the_shape(tmp_path):
    write_idx(tmp_path / "fashion-upload", _images(20), _labels(20))
    assert read_channel(tmp_path / "fashion-upload").classes == FASHION_MNIST_CLASSES
    write_idx(tmp_path / "digits", _images(20), _labels(20))
    assert read_channel(tmp_path / "digits").classes == [str(i) for i in range(10)]
    write_idx(tmp_path / "fashion-but-rgb", _images(20, c=3), _labels(20))
    assert read_channel(tmp_path / "fashion-but-rgb").classes == [str(i) for i in range(10)]


def test_unmodified_fashion_mnist_labels_are_recognised_anywhere(tmp_path, fashion_labels):
    train_labels, _ = fashion_labels
    write_idx(tmp_path / "upload", np.zeros((len(train_labels), 28, 28), np.uint8), train_labels)
    assert read_channel(tmp_path / "upload").classes == FASHION_MNIST_CLASSES
    shuffled = np.roll(train_labels, 1)
    write_idx(tmp_path / "shuffled", np.zeros((len(shuffled), 28, 28), np.uint8), shuffled)
    assert read_channel(tmp_path / "shuffled").classes == [str(i) for i in range(10)]


# --- npz -------------------------------------------------------------------------------------------

def test_npz_keras_layout_and_xy_layout(tmp_path):
    x_train, x_test = _images(25, 8, 8, 3), _images(10, 8, 8, 3)
    (tmp_path / "keras").mkdir()
    np.savez_compressed(tmp_path / "keras" / "cifar.npz", x_train=x_train, y_train=_labels(25, 5).reshape(-1, 1),
                        x_test=x_test, y_test=_labels(10, 5).reshape(-1, 1))
    assert has_split(tmp_path / "keras", "train") and has_split(tmp_path / "keras", "test")
    train, test = load_channels({"training": str(tmp_path / "keras")})
    np.testing.assert_array_equal(train.images, x_train)
    np.testing.assert_array_equal(test.images, x_test)
    assert train.classes == test.classes == ["0", "1", "2", "3", "4"]

    (tmp_path / "xy").mkdir()
    np.savez(tmp_path / "xy" / "train.npz", x=_images(6, 4, 4)[..., 0], y=np.arange(6.0) % 2)
    np.savez(tmp_path / "xy" / "test.npz", x=_images(4, 4, 4)[..., 0], y=np.array([0, 1, 2, 0]))
    train, test = load_channels({"train": str(tmp_path / "xy")})
    assert train.images.shape == (6, 4, 4, 1) and test.images.shape == (4, 4, 4, 1)
    assert train.classes == test.classes == ["0", "1", "2"]  # the longer "0".."K-1" range wins


def test_npz_with_pickled_objects_is_refused(tmp_path):
    (tmp_path / "ch").mkdir()
    np.savez(tmp_path / "ch" / "data.npz", x=np.array([object(), 1], dtype=object), y=np.array([0, 1]))
    with pytest.raises(DataError, match=r"data\.npz.*'x'"):
        read_channel(tmp_path / "ch")


# --- CSV -------------------------------------------------------------------------------------------

def _csv_rows(images, labels):
    flat = images.reshape(len(images), -1)
    return [",".join(map(str, [label, *row])) for label, row in zip(labels, flat)]


def test_csv_kaggle_layout_with_and_without_header(tmp_path):
    images, labels = _images(40), _labels(40)
    header = "label," + ",".join(f"pixel{i}" for i in range(1, 785))
    (tmp_path / "ch").mkdir()
    (tmp_path / "ch" / "fashion-mnist_train.csv").write_text("\r\n".join([header, *_csv_rows(images, labels)]))
    with gzip.open(tmp_path / "ch" / "fashion-mnist_test.csv.gz", "wt") as fh:
        fh.write("\n".join(_csv_rows(images[:8], labels[:8])) + "\n\n")
    train, test = load_channels({"train": str(tmp_path / "ch")})
    np.testing.assert_array_equal(train.images, images)
    np.testing.assert_array_equal(train.labels, labels)
    assert train.classes == FASHION_MNIST_CLASSES  # Kaggle's file names say Fashion-MNIST
    np.testing.assert_array_equal(test.images, images[:8])


def test_csv_label_column_found_by_header_name(tmp_path):
    images, labels = _images(5, 3, 3), np.array([2, 0, 1, 2, 0])
    rows = ["p1,p2,p3,p4,label,p5,p6,p7,p8,p9"]
    rows += [",".join(map(str, [*img.ravel()[:4], lab, *img.ravel()[4:]])) for img, lab in zip(images, labels)]
    (tmp_path / "data.csv").write_text("\n".join(rows))
    got = read_channel(tmp_path / "data.csv")
    np.testing.assert_array_equal(got.images, images)
    np.testing.assert_array_equal(got.labels, labels)


# --- image folders ---------------------------------------------------------------------------------

def _save(path, array, fmt):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path, format=fmt)


def test_png_folder_tree(tmp_path):
    images = _images(6, 10, 12)
    for i, cls in enumerate(["shirt", "boot", "bag"]):
        for j in range(2):
            _save(tmp_path / "ch" / cls / f"{j}.png", images[2 * i + j], "PNG")
    (tmp_path / "ch" / "bag" / "notes.txt").write_text("not an image")
    got = read_channel(tmp_path / "ch")
    assert got.classes == ["bag", "boot", "shirt"] and got.images.shape == (6, 10, 12, 1)
    np.testing.assert_array_equal(got.labels, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(got.images[:2], images[4:6])  # PNG is lossless


def test_16_bit_png_folder_is_scaled_not_clipped(tmp_path):
    images = _images(4, 8, 8)
    for i, cls in enumerate(["a", "b"]):
        for j in range(2):
            path = tmp_path / "ch" / cls / f"{j}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[2 * i + j, ..., 0].astype(np.uint16) * 257).save(path, format="PNG")
    assert Image.open(path).mode == "I;16"
    got = read_channel(tmp_path / "ch")
    np.testing.assert_array_equal(got.images, images)


def test_jpeg_folder_with_train_and_test_subfolders(tmp_path):
    for split, count in (("train", 3), ("test", 1)):
        for cls in ("cat", "dog"):
            for j in range(count):
                _save(tmp_path / "ch" / split / cls / f"{j}.jpg", _images(1, 16, 16, 3)[0], "JPEG")
    train, test = load_channels({"train": str(tmp_path / "ch")})
    assert train.images.shape == (6, 16, 16, 3) and test.images.shape == (2, 16, 16, 3)
    assert train.classes == test.classes == ["cat", "dog"]


# --- CIFAR-10 python batches -----------------------------------------------------------------------

class _Py2Pickler(pickle._Pickler):
    """Pickles as the published CIFAR-10 files were written (Python 2 cPickle, protocol 2):
    str as 8-bit strings, numpy arrays through numpy.core.multiarray._reconstruct."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_str8(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = _save_str8
    dispatch[str] = _save_str8

    def save_global(self, obj, name=None):
        name = name or obj.__qualname__
        module = pickle.whichmodule(obj, name).replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode("ascii"))
        self.memoize(obj)


def _py2_pickle(path, obj):
    with open(path, "wb") as fh:
        _Py2Pickler(fh, protocol=2).dump(obj)


CIFAR_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]


def _cifar_channel(folder, batches=2, per_batch=15):
    folder.mkdir(parents=True, exist_ok=True)
    data = {}
    for name in [f"data_batch_{i}" for i in range(1, batches + 1)] + ["test_batch"]:
        rows = RNG.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in RNG.integers(0, 10, per_batch)]
        _py2_pickle(folder / name, {b"batch_label": name.encode(), b"labels": labels, b"data": rows,
                                    b"filenames": [f"img_{i}.png".encode() for i in range(per_batch)]})
        data[name] = (rows, labels)
    _py2_pickle(folder / "batches.meta", {b"label_names": CIFAR_NAMES, b"num_cases_per_batch": per_batch,
                                          b"num_vis": 3072})
    return data


def test_cifar_batches_as_published(tmp_path):
    written = _cifar_channel(tmp_path / "ch" / "cifar-10-batches-py")
    train, test = load_channels({"training": str(tmp_path / "ch")})  # one nested folder is followed
    assert train.images.shape == (30, 32, 32, 3) and test.images.shape == (15, 32, 32, 3)
    assert train.classes == [n.decode() for n in CIFAR_NAMES]
    rows, labels = written["data_batch_2"]
    assert list(train.labels[15:]) == labels
    # row-major R, G, B planes: pixel (y, x) of channel c is data[c * 1024 + y * 32 + x]
    for y, x, c in ((0, 0, 0), (5, 31, 1), (31, 7, 2)):
        assert train.images[17, y, x, c] == rows[2, c * 1024 + y * 32 + x]


def test_cifar_pickled_by_python3_numpy2_is_read(tmp_path):
    (tmp_path / "ch").mkdir()
    rows = RNG.integers(0, 256, (4, 3072), dtype=np.uint8)
    (tmp_path / "ch" / "data_batch_1").write_bytes(pickle.dumps({"data": rows, "labels": [0, 1, 2, 3]}))
    got = read_channel(tmp_path / "ch")
    assert got.images.shape == (4, 32, 32, 3) and got.classes == [str(i) for i in range(10)]


class _Evil:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class _EvilExec:
    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return exec, (self.code,)


@pytest.mark.parametrize("kind", ["os.system", "exec", "meta"])
def test_malicious_pickle_is_refused_and_never_executed(tmp_path, kind):
    marker = tmp_path / "marker"
    if kind == "exec":
        payload = pickle.dumps({b"data": _EvilExec(f"open({str(marker)!r}, 'w').close()"), b"labels": []})
    else:
        payload = pickle.dumps({b"data": _Evil(f"touch {shlex.quote(str(marker))}"), b"labels": []})
    channel = tmp_path / "ch"
    _cifar_channel(channel, batches=1, per_batch=2)
    (channel / ("batches.meta" if kind == "meta" else "data_batch_1")).write_bytes(payload)
    target = r"batches\.meta" if kind == "meta" else "data_batch_1"
    refused = r"builtins\.exec" if kind == "exec" else r"posix\.system"
    with pytest.raises(DataError, match=rf"{target}: not a CIFAR-10 batch: refused global {refused}"):
        read_channel(channel)
    assert not marker.exists()
    pickle.loads(payload)  # the same bytes through an unrestricted unpickler do run the payload
    assert marker.exists()


# --- real Fashion-MNIST ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fashion_labels():
    path = find_fashion_mnist()
    if path is None:
        pytest.skip("Fashion-MNIST not found in /usr/share/datasets/fashion-mnist (apt-get install "
                    "dataset-fashion-mnist) nor in ~/.keras/datasets/fashion-mnist")
    return tuple(read_channel(path, split).labels for split in ("train", "test"))


def test_fashion_mnist_from_the_debian_package():
    if not (channels_module.DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian package dataset-fashion-mnist is not installed (/usr/share/datasets/fashion-mnist)")
    train, test = load_channels({"training": str(channels_module.DEBIAN_FASHION_MNIST)})
    assert train.images.shape == (60000, 28, 28, 1) and test.images.shape == (10000, 28, 28, 1)
    assert train.images.dtype == np.uint8 and 0 < train.images.mean() < 255
    assert train.classes == test.classes == FASHION_MNIST_CLASSES
    assert list(train.class_counts()) == [6000] * 10 and list(test.class_counts()) == [1000] * 10


def test_find_fashion_mnist_falls_back_to_the_keras_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(channels_module, "DEBIAN_FASHION_MNIST", tmp_path / "absent")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KERAS_HOME", raising=False)
    cache = tmp_path / "home" / ".keras" / "datasets" / "fashion-mnist"
    write_idx(cache, _images(3), [0, 1, 2], prefix="train")
    assert find_fashion_mnist() is None  # t10k files still missing
    write_idx(cache, _images(2), [0, 1], prefix="t10k")
    assert find_fashion_mnist() == cache


# --- channels --------------------------------------------------------------------------------------

def test_load_channels_train_test_combinations(tmp_path):
    write_idx(tmp_path / "a", _images(20), _labels(20), prefix="train")
    write_idx(tmp_path / "b", _images(8), _labels(8), prefix="t10k")
    write_idx(tmp_path / "c", _images(8), _labels(8), prefix="train")
    train, test = load_channels({"train": str(tmp_path / "a"), "test": str(tmp_path / "b")})
    assert (len(train), len(test)) == (20, 8)
    train, test = load_channels({"training": str(tmp_path / "a"), "test": str(tmp_path / "c"), "code": "/x"})
    assert (len(train), len(test)) == (20, 8)
    assert load_channels({"training": str(tmp_path / "a")})[1] is None
    with pytest.raises(DataError, match=r"no training channel.*\['code', 'test'\]"):
        load_channels({"test": str(tmp_path / "b"), "code": "/x"})
    with pytest.raises(DataError, match="both 'train'"):
        load_channels({"train": str(tmp_path / "a"), "training": str(tmp_path / "a")})


def test_load_channels_requires_one_shape_and_one_class_list(tmp_path):
    write_idx(tmp_path / "a", _images(6), _labels(6, 3), prefix="train")
    write_idx(tmp_path / "b", _images(6, 14, 14), _labels(6, 3), prefix="t10k")
    with pytest.raises(DataError, match=r"14x14x1 but training images .* 28x28x1"):
        load_channels({"train": str(tmp_path / "a"), "test": str(tmp_path / "b")})
    for cls in ("x", "y"):
        _save(tmp_path / "f1" / cls / "0.png", _images(1, 4, 4)[0], "PNG")
    for cls in ("x", "z"):
        _save(tmp_path / "f2" / cls / "0.png", _images(1, 4, 4)[0], "PNG")
    with pytest.raises(DataError, match=r"classes differ.*only in training: \['y'\], only in test: \['z'\]"):
        load_channels({"train": str(tmp_path / "f1"), "test": str(tmp_path / "f2")})


# --- stratified split ------------------------------------------------------------------------------

def test_stratified_split_proportions_and_determinism():
    labels = np.repeat(np.arange(5), [200, 100, 50, 7, 2])
    labels = np.concatenate([labels, [5]])  # a class with a single sample
    kept, held = stratified_split(labels, 0.2, seed=3)
    assert len(held) == round(len(labels) * 0.2) and len(kept) + len(held) == len(labels)
    assert not set(kept) & set(held)
    held_counts = np.bincount(labels[held], minlength=6)
    assert list(held_counts[:3]) == [40, 20, 10]
    assert held_counts[3] in (1, 2) and held_counts[4] == 1 and held_counts[5] == 0
    assert all(np.bincount(labels[kept], minlength=6) > 0)
    again = stratified_split(labels, 0.2, seed=3)
    np.testing.assert_array_equal(again[1], held)
    assert not np.array_equal(stratified_split(labels, 0.2, seed=4)[1], held)
    with pytest.raises(ValueError, match="fraction"):
        stratified_split(labels, 1.0, seed=0)


# --- bad input -------------------------------------------------------------------------------------

BAD_CASES = {}


def _bad_case(fn):
    BAD_CASES[fn.__name__] = fn
    return fn


@_bad_case
def truncated_idx_raw(ch):
    _write_idx_pair(ch, "train", _images(10), _labels(10), gz=False)
    data = (ch / "train-images-idx3-ubyte").read_bytes()
    (ch / "train-images-idx3-ubyte").write_bytes(data[:-100])
    return r"train-images-idx3-ubyte: truncated IDX file: header declares shape \(10, 28, 28\) \(7840 bytes.*7740"


@_bad_case
def truncated_idx_gz(ch):
    _write_idx_pair(ch, "train", _images(10), _labels(10), gz=True)
    data = (ch / "train-images-idx3-ubyte.gz").read_bytes()
    (ch / "train-images-idx3-ubyte.gz").write_bytes(data[: len(data) // 2])
    return r"train-images-idx3-ubyte\.gz: gzip stream is truncated"


@_bad_case
def idx_count_mismatch(ch):
    _write_idx_pair(ch, "train", _images(10), _labels(9), gz=False)
    return r"train-labels-idx1-ubyte: 9 labels for 10 images"


@_bad_case
def idx_not_idx(ch):
    (ch / "train-images-idx3-ubyte").write_bytes(b"PK\x03\x04" + bytes(40))
    (ch / "train-labels-idx1-ubyte").write_bytes(_idx(_labels(3)))
    return r"train-images-idx3-ubyte: not an IDX file"


@_bad_case
def csv_text_pixel(ch):
    rows = _csv_rows(_images(3, 2, 2), [0, 1, 0])
    rows[2] = "0,1,2,abc,4"
    (ch / "train.csv").write_text("label,px1,px2,px3,px4\n" + "\n".join(rows))
    return r"train\.csv line 4, column 4 \(px3\): 'abc' is not a number"


@_bad_case
def csv_wrong_columns(ch):
    (ch / "train.csv").write_text("1,2,3,4,5\n1,2,3,4\n")
    return r"train\.csv line 2: 4 columns; expected 5"


@_bad_case
def csv_not_square(ch):
    (ch / "train.csv").write_text("1,2,3,4\n")
    return r"train\.csv: 4 columns = 1 label \+ 3 pixels"


@_bad_case
def csv_label_range(ch):
    (ch / "train.csv").write_text("1,2,3,4,5\n300,2,3,4,5\n")
    return r"train\.csv line 2, column 1: label 300"


@_bad_case
def npz_negative_label(ch):
    np.savez(ch / "data.npz", x=_images(4, 3, 3), y=np.array([0, 1, -3, 1]))
    return r"data\.npz.*label -3 at index 2 is out of range"


@_bad_case
def npz_count_mismatch(ch):
    np.savez(ch / "data.npz", x_train=_images(4, 3, 3), y_train=np.array([0, 1, 1]))
    return r"data\.npz: 'x_train' holds 4 images but 'y_train' 3 labels"


@_bad_case
def npz_float_pixels(ch):
    np.savez(ch / "data.npz", x=RNG.random((4, 3, 3)), y=np.array([0, 1, 1, 0]))
    return r"data\.npz \['x'\]: pixels are floats in 0\..*multiply by 255"


@_bad_case
def label_beyond_named_classes(ch):
    write_idx(ch, _images(3), [0, 1, 3])
    (ch / "classes.json").write_text(json.dumps(["a", "b", "c"]))
    return r"train-labels-idx1-ubyte\.gz.*label 3 at index 2 is out of range; expected 0\.\.2"


@_bad_case
def corrupt_png(ch):
    for cls in ("a", "b"):
        _save(ch / cls / "ok.png", _images(1, 8, 8)[0], "PNG")
    (ch / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage")
    return r"b/broken\.png: not a readable PNG/JPEG image"


@_bad_case
def cifar_label_range(ch):
    _cifar_channel(ch, batches=1, per_batch=3)
    _py2_pickle(ch / "data_batch_1", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 10]})
    return r"data_batch_1: label 10 at index 1 is out of range; expected 0\.\.9"


@_bad_case
def cifar_not_a_pickle(ch):
    (ch / "data_batch_1").write_bytes(b"this is text")
    return r"data_batch_1: not a readable CIFAR-10 pickle"


@_bad_case
def empty_channel(ch):
    return r"ch: channel directory is empty"


@_bad_case
def unknown_files(ch):
    (ch / "notes.txt").write_text("hello")
    return r"ch: no readable data among notes\.txt; expected one of: IDX"


@_bad_case
def two_formats(ch):
    np.savez(ch / "data.npz", x=_images(2, 3, 3), y=np.array([0, 1]))
    (ch / "data.csv").write_text("0,1,2,3,4\n")
    return r"ch: holds several formats \(CSV, npz\)"


@_bad_case
def no_test_split(ch):
    write_idx(ch, _images(3), [0, 1, 2])
    return r"ch: no test data: the IDX files there hold only train data; expected t10k-images"



def test_a_png_of_another_size_and_mode_is_resized_and_converted(tmp_path, caplog):
    for cls in ("a", "b"):
        _save(tmp_path / cls / "0.png", _images(1, 8, 8)[0], "PNG")
    _save(tmp_path / "b" / "1.png", _images(1, 9, 8, 3)[0], "PNG")
    with caplog.at_level("INFO", logger="training.data.folder"):
        images = read_channel(tmp_path).images
    assert images.shape == (3, 8, 8, 1)  # the most common size, the mode most images have
    assert "resized 1 of 3 images to 8x8" in caplog.text and "converted 1 of 3 images to grayscale" in caplog.text


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input_names_the_file_and_the_problem(tmp_path, case):
    (tmp_path / "ch").mkdir()
    expected = BAD_CASES[case](tmp_path / "ch")
    with pytest.raises(DataError) as info:
        read_channel(tmp_path / "ch", "test" if case == "no_test_split" else "train")
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    assert re.search(expected, message), message


def test_missing_channel_directory(tmp_path):
    with pytest.raises(DataError, match=r"absent: channel directory does not exist"):
        read_channel(tmp_path / "absent")
    assert not has_split(tmp_path / "absent", "train")


def test_json_classes_file_must_be_a_list_of_names(tmp_path):
    write_idx(tmp_path, _images(2), [0, 1])
    (tmp_path / "classes.json").write_text(json.dumps({"0": "a"}))
    with pytest.raises(DataError, match=r"classes\.json: expected a JSON list"):
        read_channel(tmp_path)
