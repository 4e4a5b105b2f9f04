"""Managed spot training: a job killed at any moment resumes from a consistent checkpoint, sees the
data order the uninterrupted job would have seen, and refuses to resume with other hyperparameters."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.test_docker import program_env
from training import checkpoints
from training.local import prepare_opt_ml
from training.models import ConfigError
from training.train import main, run_training

MLP = {"model": "mlp", "dense": "32", "epochs": 3, "batch_size": 128, "max_train_samples": 3000,
       "max_test_samples": 300, "seed": 5, "verbose": 0, "export_onnx": "false"}


def start(root, **env):
    return subprocess.Popen([sys.executable, "-m", "training.train"], env=program_env(root, **env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process, timeout=240):
    stdout, stderr = process.communicate(timeout=timeout)
    return process.returncode, stdout, stderr


@pytest.fixture(scope="module")
def uninterrupted(fashion_subset_dir, tmp_path_factory):
    """metrics.json of the 3-epoch job run from start to end in one process."""
    root = prepare_opt_ml(tmp_path_factory.mktemp("uninterrupted"), {"train": str(fashion_subset_dir)}, MLP)
    code, _, stderr = finish(start(root))
    assert code == 0, stderr[-3000:]
    return json.loads((root / "model" / "metrics.json").read_text())


def assert_sound(checkpoint_dir):
    """Every checkpoint's state matches its weights; no temporary folder is left."""
    import keras

    names = sorted(p.name for p in checkpoint_dir.iterdir())
    assert not [n for n in names if n.startswith(".tmp")], names
    for path in checkpoint_dir.glob("ckpt-*"):
        state = json.loads((path / "state.json").read_text())
        assert path.name == f"ckpt-{state['epoch']}" and len(state["history"]["loss"]) == state["epoch"]
        model = keras.models.load_model(path / "model.keras")
        assert checkpoints.weights_digest(model.get_weights()) == state["weights_sha256"], path
    return names


@pytest.mark.parametrize("point", ["after-model", "before-rename"])
def test_kill_while_saving_resumes_from_the_last_whole_checkpoint(point, fashion_subset_dir, tmp_path,
                                                                  uninterrupted):
    root = prepare_opt_ml(tmp_path, {"train": str(fashion_subset_dir)}, MLP)
    code, stdout, _ = finish(start(root, CONVLAB_TEST_CHECKPOINT_HOOK=f"{point}:2"))
    assert code == -signal.SIGKILL
    assert "convlab-metrics epoch=2" in stdout and "epoch=3" not in stdout
    names = sorted(p.name for p in (root / "checkpoints").iterdir())
    assert names[0].startswith(".tmp-ckpt-2-") and names[1:] == ["ckpt-1"], names
    assert not (root / "model" / "metrics.json").exists()

    code, stdout, stderr = finish(start(root))
    assert code == 0, stderr[-3000:]
    assert "a checkpoint whose writing was interrupted" in stderr
    assert f"resuming from checkpoint {root / 'checkpoints' / 'ckpt-1'} after epoch 1" in stderr
    assert "convlab-metrics epoch=1" not in stdout and "convlab-metrics epoch=3" in stdout
    assert assert_sound(root / "checkpoints") == ["ckpt-2", "ckpt-3"]
    metrics = json.loads((root / "model" / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 3
    # Same data order and state as the uninterrupted job: the same numbers, epoch by epoch.
    assert metrics["history"] == uninterrupted["history"]
    assert metrics["test_accuracy"] == uninterrupted["test_accuracy"]


def test_sigkill_between_epochs_resumes_after_the_last_completed_epoch(fashion_subset_dir, tmp_path, uninterrupted):
    root = prepare_opt_ml(tmp_path, {"train": str(fashion_subset_dir)}, MLP)
    process = start(root)
    deadline = time.monotonic() + 180
    while not (root / "checkpoints" / "ckpt-1").exists():
        assert process.poll() is None and time.monotonic() < deadline, "no first checkpoint"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # what a reclaimed spot instance does, without warning
    code, _, _ = finish(process)
    assert code == -signal.SIGKILL
    done = max(int(p.name.split("-")[1]) for p in (root / "checkpoints").glob("ckpt-*"))
    assert done < 3 and not (root / "model" / "metrics.json").exists()

    code, stdout, stderr = finish(start(root))
    assert code == 0, stderr[-3000:]
    assert f"after epoch {done}" in stderr and f"convlab-metrics epoch={done} " not in stdout
    assert_sound(root / "checkpoints")
    metrics = json.loads((root / "model" / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 3 and metrics["history"] == uninterrupted["history"]


def test_epoch_order_depends_only_on_seed_and_epoch():
    from training.pipeline import make_dataset

    count, batch = 50, 8
    images = np.zeros((count, 2, 2, 1), np.uint8)
    indices = np.arange(count)  # as labels, the batches show the order of the examples

    def orders(done, total, seed=11):
        dataset = make_dataset(images, indices, batch, 1.0, shuffle=True, seed=seed, epochs=(done, total))
        flat = np.concatenate([labels.numpy() for _, labels in dataset])
        return flat.reshape(total - done, count)

    full = orders(0, 3)
    assert all(sorted(order) == list(range(count)) for order in full)
    assert not np.array_equal(full[0], full[1]) and not np.array_equal(full[1], full[2])
    np.testing.assert_array_equal(orders(1, 3), full[1:])  # resumed after epoch 1
    np.testing.assert_array_equal(orders(2, 3), full[2:])
    assert not np.array_equal(orders(0, 1, seed=12)[0], full[0])


@pytest.mark.parametrize("name, value", [("learning_rate", 0.01), ("optimizer", "sgd"), ("lr_schedule", "cosine"),
                                         ("validation_fraction", 0.2), ("label_smoothing", 0.1),
                                         ("batch_size", 64), ("filters", 16), ("augment", "light")])
def test_resume_with_another_hyperparameter_is_refused(name, value, fashion_subset_dir, tmp_path, resumable):
    root, old = resumable
    config = root / "input" / "config" / "hyperparameters.json"
    config.write_text(json.dumps(dict(json.loads(config.read_text()), **{name: str(value)})))
    assert main([], root=root) == 1
    failure = (root / "output" / "failure").read_text().strip()
    assert len(failure.splitlines()) == 1
    assert f"'{name}' was {old[name]!r}, now {value!r}" in failure, failure
    assert str(root / "checkpoints" / "ckpt-1") in failure
    assert not (root / "model" / "metrics.json").exists()


@pytest.fixture
def resumable(fashion_subset_dir, tmp_path):
    """An emulated /opt/ml whose checkpoints hold epoch 1 of a job, and that job's hyperparameters."""
    hyperparameters = dict(MLP, epochs=1, max_train_samples=1000)
    root = prepare_opt_ml(tmp_path, {"train": str(fashion_subset_dir)}, hyperparameters)
    run_training(hyperparameters, {"train": str(fashion_subset_dir)}, str(tmp_path / "first"),
                 checkpoint_dir=str(root / "checkpoints"))
    assert (root / "checkpoints" / "ckpt-1").is_dir()
    defaults = {"learning_rate": 0.001, "optimizer": "adam", "lr_schedule": "constant", "validation_fraction": 0.1,
                "label_smoothing": 0.0, "batch_size": 128, "filters": 32, "augment": "none"}
    return root, defaults


def test_resume_accepts_more_epochs_and_other_harmless_changes(fashion_subset_dir, tmp_path):
    channels = {"train": str(fashion_subset_dir)}
    first = dict(MLP, epochs=1, max_train_samples=1000)
    run_training(first, channels, str(tmp_path / "m1"), checkpoint_dir=str(tmp_path / "ck"))
    second = dict(first, epochs=2, verbose=1, export_onnx="false", max_test_samples=200, early_stopping_patience=3)
    metrics = run_training(second, channels, str(tmp_path / "m2"), checkpoint_dir=str(tmp_path / "ck"))
    assert metrics["epochs_completed"] == 2 and metrics["num_test"] == 200
    # With a cosine schedule the number of epochs sets the schedule's length: it may not change.
    cosine = dict(first, lr_schedule="cosine")
    run_training(cosine, channels, str(tmp_path / "m3"), checkpoint_dir=str(tmp_path / "cos"))
    with pytest.raises(ConfigError, match=r"'epochs' was 1, now 2"):
        run_training(dict(cosine, epochs=2), channels, str(tmp_path / "m4"), checkpoint_dir=str(tmp_path / "cos"))


def _tiny_model(seed):
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(optimizer="adam", loss="mse")
    return model


def _save(directory, epoch, seed=None):
    model = _tiny_model(epoch if seed is None else seed)
    best = [w + epoch for w in model.get_weights()]
    checkpoints.save_checkpoint(directory, model, {"epoch": epoch, "identity": {}, "history": {}}, best)
    return best


def test_a_cut_short_best_weights_file_resumes_from_the_checkpoint_before(tmp_path):
    first = _save(tmp_path, 1)
    _save(tmp_path, 2)
    best = tmp_path / "ckpt-2" / checkpoints.BEST_FILE
    best.write_bytes(best.read_bytes()[: best.stat().st_size // 2])  # an S3 sync cut short
    model, state, weights = checkpoints.load_checkpoint(tmp_path, {})
    assert state["epoch"] == 1
    assert all(np.array_equal(a, b) for a, b in zip(weights, first))


def test_the_digest_covers_every_file_of_a_checkpoint(tmp_path):
    _save(tmp_path, 1)
    _save(tmp_path, 2)
    state = json.loads((tmp_path / "ckpt-2" / checkpoints.STATE_FILE).read_text())
    assert set(state["files_sha256"]) == {checkpoints.MODEL_FILE, checkpoints.BEST_FILE}
    # A readable best.weights.npz from elsewhere (a half-synced folder mixing two uploads) is not this one.
    np.savez(tmp_path / "ckpt-2" / checkpoints.BEST_FILE, *[np.zeros(3)])
    assert checkpoints.load_checkpoint(tmp_path, {})[1]["epoch"] == 1


class Killed(BaseException):
    """Stands for the process dying at that instant: nothing after it runs."""


def test_replacing_a_checkpoint_is_one_step_and_synced_first(tmp_path, monkeypatch):
    import os

    _save(tmp_path, 1)
    kept = _save(tmp_path, 2, seed=20)
    real_rename, real_fsync, synced = os.rename, os.fsync, []

    def rename(src, dst):
        if os.path.basename(dst) == "ckpt-2" and ".tmp-ckpt" in os.path.basename(src):
            assert {checkpoints.MODEL_FILE, checkpoints.BEST_FILE, checkpoints.STATE_FILE, os.path.basename(src)} \
                <= set(synced), synced
            raise Killed()
        return real_rename(src, dst)

    def fsync(fd):
        synced.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(Killed):
        _save(tmp_path, 2, seed=21)  # a resumed run writing epoch 2 again, killed while replacing it
    monkeypatch.undo()
    _, state, weights = checkpoints.load_checkpoint(tmp_path, {})
    assert state["epoch"] == 2 and all(np.array_equal(a, b) for a, b in zip(weights, kept))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-1", "ckpt-2"]
    _save(tmp_path, 2, seed=22)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-1", "ckpt-2"]
