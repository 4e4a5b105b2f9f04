"""A newcomer's own folder of images, as real folders are: mixed sizes, a few grayscale images among
colour ones, a few broken files, few images; and the hyperparameter mistakes a newcomer makes. Each
test does what the newcomer did (`python -m convlab train ...` in a child process, as the README's
`convlab train`) and checks what they see."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .test_newcomer import error_lines, run

CLASSES = {1: "trouser", 7: "sneaker", 8: "bag"}  # Fashion-MNIST label -> class folder
FAST = ["--filters", "8", "--dense", "32", "--export_onnx", "false", "--verbose", "0"]


def write_mixed_folder(dest: Path, train, per_class: int) -> dict:
    """Real Fashion-MNIST images as a folder of colour PNG/JPEG files, every 10th one grayscale and
    every 7th one 36x36 instead of 28x28; returns the counts the reader must report."""
    counts = {"grayscale": 0, "resized": 0, "total": 0}
    for label, name in CLASSES.items():
        (dest / name).mkdir(parents=True)
        for i, k in enumerate(np.flatnonzero(train.labels == label)[:per_class]):
            pixels = train.images[k][..., 0]
            if i % 10 == 3:
                image = Image.fromarray(pixels, "L")
                counts["grayscale"] += 1
            else:
                tint = np.array([1.0, 0.8, 0.6]) if label == 1 else np.array([0.6, 0.9, 1.0])
                image = Image.fromarray((pixels[..., None] * tint).astype(np.uint8), "RGB")
            if i % 7 == 5:
                image = image.resize((36, 36))
                counts["resized"] += 1
            image.save(dest / name / f"{i:04d}.{'jpg' if i % 2 else 'png'}")
            counts["total"] += 1
    return counts


@pytest.fixture(scope="module")
def mixed_folder(fashion_mnist, tmp_path_factory):
    dest = tmp_path_factory.mktemp("own") / "clothes"
    return dest, write_mixed_folder(dest, fashion_mnist[0], per_class=100)


def test_a_folder_of_mixed_sizes_and_modes_trains_and_says_what_it_converted(mixed_folder, tmp_path):
    folder, counts = mixed_folder
    done = run("-m", "convlab", "train", "--local", "--train", str(folder), "--work-dir", str(tmp_path),
               "--epochs", "2", "--batch_size", "32", *FAST)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (f"resized {counts['resized']} of {counts['total']} images to 28x28" in done.stderr), done.stderr
    assert f"converted {counts['grayscale']} of {counts['total']} images to colour (RGB)" in done.stderr
    metrics = json.loads((tmp_path / "latest" / "model" / "metrics.json").read_text())
    assert metrics["config"]["input_shape"] == [28, 28, 3]
    assert metrics["num_train"] + metrics["num_val"] + metrics["num_test"] == counts["total"]


def test_image_size_sets_the_size_every_image_is_given(mixed_folder):
    from training.data import load_channels

    folder, counts = mixed_folder
    train, test = load_channels({"train": str(folder)}, image_size=(20, 24))
    assert test is None and train.images.shape == (counts["total"], 20, 24, 3)


def test_every_bad_file_is_named_in_one_message_with_the_users_path(mixed_folder, tmp_path):
    import shutil

    folder = tmp_path / "photos"
    shutil.copytree(mixed_folder[0], folder)
    broken = [folder / "bag" / "0002.png", folder / "trouser" / "notes.jpg", folder / "sneaker" / "0000.png"]
    broken[0].write_bytes(broken[0].read_bytes()[:60])      # cut short
    broken[1].write_text("not an image at all")             # a text file named .jpg
    broken[2].write_bytes(b"")                               # empty
    done = run("-m", "convlab", "train", "--local", "--train", str(folder), "--work-dir", str(tmp_path / "w"),
               "--epochs", "1", *FAST)
    assert done.returncode == 1
    failed = [line for line in done.stderr.splitlines() if "training failed" in line]
    assert len(failed) == 1, done.stderr[-3000:]
    assert "3 of 301 files cannot be used" in failed[0]
    for path in broken:
        assert f"{path}: not a readable PNG/JPEG image" in failed[0]
    assert "opt_ml" not in failed[0] and "/runs/" not in failed[0]


def test_class_names_with_the_wrong_count_says_so(mixed_folder, fashion_subset_dir):
    from training.data import DataError, load_channels

    with pytest.raises(DataError) as caught:
        load_channels({"train": str(mixed_folder[0])}, "cat,dog")
    assert ("hyperparameter 'class_names': 2 names (cat, dog) for the 3 classes of" in str(caught.value)
            and "(bag, sneaker, trouser); expected 3 names" in str(caught.value))
    with pytest.raises(DataError, match=r"3 names \(a, b, c\) for the 10 classes of .*expected 10 names"):
        load_channels({"train": str(fashion_subset_dir)}, "a,b,c")


def _refused_before_tensorflow(argv: list[str]) -> list[str]:
    """convlab train's answer to argv, in a process that reports whether TensorFlow was imported."""
    probe = ("import sys; from convlab.train_cli import main; code = main(sys.argv[1:]); "
             "print(code, 'tensorflow' in sys.modules, 'keras' in sys.modules)")
    done = run("-c", probe, *argv)
    assert done.stdout.split() == ["2", "False", "False"], (done.stdout, done.stderr[-2000:])
    lines = error_lines(done, "convlab train:")
    assert len(lines) == 1, done.stderr
    return lines


def test_every_misspelt_hyperparameter_gets_did_you_mean(mixed_folder, tmp_path):
    line, = _refused_before_tensorflow(["--train", str(mixed_folder[0]), "--work-dir", str(tmp_path),
                                        "--lr", "0.01", "--epoch", "3", "--kernel", "5", "--bs", "16"])
    assert "unknown hyperparameters (4)" in line
    for wrong, meant in (("lr", "learning_rate"), ("epoch", "epochs"), ("kernel", "kernel_size"),
                         ("bs", "batch_size")):
        assert re.search(rf"'{wrong}' \(value '[^']+'; did you mean '{meant}'\?\)", line), line
    assert not (tmp_path / "runs").exists()


def test_invalid_values_are_refused_before_tensorflow_loads(mixed_folder, fashion_subset_dir, tmp_path):
    line, = _refused_before_tensorflow(["--train", str(mixed_folder[0]), "--work-dir", str(tmp_path),
                                        "--model", "resnet"])
    assert "hyperparameter 'model': expected one of ('mlp', 'cnn'), got 'resnet'" in line
    for data, shape in ((mixed_folder[0], "28x28x3"), (fashion_subset_dir, "28x28x1")):
        line, = _refused_before_tensorflow(["--train", str(data), "--work-dir", str(tmp_path), "--depth", "9"])
        assert "layer block5_pool" in line and f"the images of --train {data} are {shape}" in line, line
    assert not (tmp_path / "runs").exists()


def test_small_data_gets_enough_optimizer_steps_unless_epochs_is_given():
    from training.hyperparameters import MIN_STEPS, choose_epochs, parse_hyperparameters

    def epochs(hyperparameters: dict, images: int) -> int:
        params, _ = parse_hyperparameters(hyperparameters)
        return choose_epochs(params, -(-images // params.batch_size), images)

    # 3 classes x 300 images: 729 training images, 6 steps per epoch at batch 128.
    assert epochs({}, 729) == -(-MIN_STEPS // 6) == 84
    assert epochs({"epochs": "5"}, 729) == 5                # given: kept as given
    assert epochs({"min_steps": "0"}, 729) == 5             # switched off: the default
    assert epochs({}, 54_000) == 5                         # Fashion-MNIST: the default already suffices
    assert epochs({}, 20) == 100                           # at most MAX_AUTO_EPOCHS


def test_a_run_without_epochs_on_small_data_trains_the_steps_and_learns(mixed_folder, tmp_path):
    folder, counts = mixed_folder
    done = run("-m", "convlab", "train", "--train", str(folder), "--work-dir", str(tmp_path),
               "--batch_size", "32", "--min_steps", "60", *FAST)
    assert done.returncode == 0, done.stderr[-3000:]
    # 300 images: 243 train at batch 32 = 8 steps per epoch; 60 steps need 8 epochs.
    assert "243 training images at batch_size 32 are 8 steps per epoch: training 8 epochs" in done.stderr
    metrics = json.loads((tmp_path / "latest" / "model" / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 8 and metrics["test_accuracy"] > 0.7
    assert "at or near chance" not in done.stderr


def test_a_run_at_chance_warns_and_says_what_to_try(fashion_mnist, tmp_path):
    """Every class folder holds copies of one image: nothing tells the classes apart."""
    image = Image.fromarray(fashion_mnist[0].images[0][..., 0], "L")
    for name in ("a", "b", "c"):
        (tmp_path / "same" / name).mkdir(parents=True)
        for i in range(40):
            image.save(tmp_path / "same" / name / f"{i}.png")
    done = run("-m", "convlab", "train", "--train", str(tmp_path / "same"), "--work-dir", str(tmp_path / "w"),
               "--epochs", "1", *FAST)
    assert done.returncode == 0, done.stderr[-3000:]
    warning = next(line for line in done.stderr.splitlines() if "WARNING" in line and "chance" in line)
    assert "test accuracy 0.333 is at or near chance (0.333" in warning
    assert "--epochs " in warning and "--batch_size 32" in warning
    assert "warning: that is at or near chance" in done.stdout


def test_the_report_does_not_rank_settings_that_are_all_at_chance(tmp_path):
    from report.analysis import load_study_documents, summarize
    from report.verdicts import conclusions
    from training.experiments.records import load_records

    from .synthetic_runs import diagonal_confusion, study, write_runs

    settings = [{"label": f"{k}x{k}", "kernel_size": k, "accuracy": [a, a], "params": 1000, "flops": 1000,
                 "seconds": [1.0, 1.0], "confusion": diagonal_confusion(a)} for k, a in ((3, 0.10), (5, 0.12))]
    runs = write_runs(tmp_path / "runs", [study("kernel_size", "kernel_size", settings, seeds=2)])
    lines = conclusions(summarize(load_study_documents(runs)[0], load_records(runs)))
    assert len(lines) == 1 and lines[0].startswith("Every setting is at or near chance (10.00 %")
    assert "Highest" not in lines[0] and "3x3 10.00" in lines[0] and "5x5 12.00" in lines[0]


def test_the_reports_data_section_states_the_test_count_the_runs_used(mixed_folder, tmp_path):
    from report.sections import data_section
    from training.data import load_channels

    train, test = load_channels({"train": str(mixed_folder[0])})
    blocks = data_section(train, test, tmp_path, tested=[30])
    text = next(b.text for b in blocks if getattr(b, "text", "").startswith("This data set"))
    assert text.startswith("This data set: 300 images with no test split of their own (each run held out 30 "
                           "of them as its test set) of 28x28x3 pixels in 3 classes"), text


def test_a_single_file_channel_is_named_where_the_user_keeps_it(tmp_path):
    """Local mode links a single data file into the emulated channel folder; errors name the original."""
    from training.data import DataError, read_channel
    from training.local import prepare_tree

    mine = tmp_path / "mine" / "data.npz"
    mine.parent.mkdir()
    np.savez(mine, x=np.zeros((4, 8, 8), np.uint8), y=np.array([0, 1, 2]))
    root = prepare_tree(tmp_path / "run", {"train": str(mine)}, {})
    with pytest.raises(DataError) as caught:
        read_channel(root / "input" / "data" / "train")
    assert str(caught.value).startswith(str(mine)) and str(root) not in str(caught.value)
