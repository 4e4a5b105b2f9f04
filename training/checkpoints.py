"""Checkpoints that let a stopped job resume (managed spot training syncs the folder with S3).

Layout: `<checkpoint_dir>/ckpt-<epoch>/` holding model.keras (model and optimizer), best.weights.npz
(the best weights by validation accuracy so far) and state.json (epoch, history, identity, a
digest of the weights in model.keras and a sha256 of every other file). A checkpoint is written as
`.tmp-ckpt-<epoch>-<pid>/`, its files and folder synced to disk, and renamed into place in one step
(one it replaces is renamed aside first and deleted after), so a process killed at any moment
leaves either the previous checkpoint or the new one, never a mix. Loading takes the newest
checkpoint whose files match their digests and load (an S3 sync cut short is skipped for the one
before), deletes leftover temporary folders and puts back a checkpoint renamed aside.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import signal
from pathlib import Path

import numpy as np

from .data.fingerprint import describe_change
from .models import ConfigError

log = logging.getLogger("convlab.train")

STATE_FILE = "state.json"
MODEL_FILE = "model.keras"
BEST_FILE = "best.weights.npz"
KEEP = 2  # checkpoints kept: the newest, and the one before in case the newest is damaged
NAME = re.compile(r"ckpt-(\d+)$")
# Hyperparameters that may change when a job resumes: they do not change the epochs already trained
# or the ones to come. `epochs` changes the cosine schedule's length, so with lr_schedule=cosine it is fixed.
RESUMABLE_CHANGES = ("epochs", "verbose", "export_onnx", "max_test_samples", "early_stopping_patience",
                     "early_stopping_fraction")
# A test-only hook: "<point>:<epoch>" makes the process SIGKILL itself at that point of that epoch's save.
TEST_HOOK = "CONVLAB_TEST_CHECKPOINT_HOOK"


def identity(hyperparameters: dict, model_config: dict, data: dict | None = None) -> dict:
    """Everything a resumed run must share with the run that wrote the checkpoint: the hyperparameters,
    the model and, when given, the fingerprint of the channels (training.data.fingerprint)."""
    fixed = dict(hyperparameters)
    for name in RESUMABLE_CHANGES:
        if not (name == "epochs" and fixed.get("lr_schedule") == "cosine"):
            fixed.pop(name, None)
    document = {"hyperparameters": fixed, "model": dict(model_config)}
    if data is not None:
        document["data"] = data
    # Through JSON, as state.json stores it (tuples become lists).
    return json.loads(json.dumps(document))


def identity_changes(saved: dict, current: dict) -> list[tuple[str, object, object]]:
    """(name, old, new) for every hyperparameter that differs between two identities."""
    changes = []
    for part in ("hyperparameters", "model"):
        old, new = saved.get(part, {}), current.get(part, {})
        for name in sorted(set(old) | set(new)):
            if old.get(name) != new.get(name):
                changes.append((name, old.get(name, "<unset>"), new.get(name, "<unset>")))
    return changes


def check_identity(saved: dict, current: dict, directory: Path) -> None:
    if "data" in current and saved.get("data") != current["data"]:
        listed = "; ".join(describe_change(saved.get("data"), current["data"]))
        raise ConfigError(f"checkpoint {directory} was written while training on other data: {listed}. Resume "
                          "with the data it started with, or use an empty checkpoint dir (convlab opt-ml lays "
                          "out a fresh /opt/ml tree unless --keep-checkpoints is given)")
    changes = identity_changes(saved, current)
    if changes:
        listed = "; ".join(f"'{name}' was {old!r}, now {new!r}" for name, old, new in changes)
        raise ConfigError(f"checkpoint {directory} was written with other hyperparameters: {listed}. Resume with "
                          f"the same values (only {', '.join(RESUMABLE_CHANGES)} may change) or use an empty "
                          f"checkpoint dir")


def weights_digest(weights: list) -> str:
    digest = hashlib.sha256()
    for array in weights:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _hook(point: str, epoch: int) -> None:
    if os.environ.get(TEST_HOOK) == f"{point}:{epoch}":
        log.warning("%s=%s: killing this process", TEST_HOOK, os.environ[TEST_HOOK])
        os.kill(os.getpid(), signal.SIGKILL)


def file_digests(folder: Path) -> dict[str, str]:
    """sha256 of every checkpoint file in `folder` but state.json, by name."""
    digests = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.name != STATE_FILE:
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            digests[path.name] = digest.hexdigest()
    return digests


def _fsync(path: Path) -> None:
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _install(staging: Path, target: Path) -> None:
    """Put `staging` at `target` in one rename; an existing target is renamed aside first and
    deleted after, so at every instant one whole checkpoint is found (load restores an aside one)."""
    for path in staging.iterdir():
        _fsync(path)
    _fsync(staging)
    aside = None
    if target.exists():  # left by a run that resumed from an older checkpoint
        aside = target.parent / f".old-{target.name}-{os.getpid()}"
        os.rename(target, aside)
    os.rename(staging, target)
    _fsync(target.parent)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def save_checkpoint(directory: Path, model, state: dict, best_weights: list | None) -> Path:
    """Write ckpt-<epoch> as one unit (temporary folder, then one rename) and prune older ones."""
    epoch = state["epoch"]
    directory.mkdir(parents=True, exist_ok=True)
    staging = directory / f".tmp-ckpt-{epoch}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    model.save(staging / MODEL_FILE)
    _hook("after-model", epoch)
    if best_weights is not None:
        np.savez(staging / BEST_FILE, *best_weights)
    state = dict(state, weights_sha256=weights_digest(model.get_weights()), files_sha256=file_digests(staging))
    (staging / STATE_FILE).write_text(json.dumps(state))
    _hook("before-rename", epoch)
    target = directory / f"ckpt-{epoch}"
    _install(staging, target)
    _hook("after-rename", epoch)
    for old in _checkpoints(directory)[KEEP:]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _checkpoints(directory: Path) -> list[Path]:
    """ckpt-<epoch> folders, newest first."""
    found = [(int(m.group(1)), p) for p in directory.iterdir() if p.is_dir() and (m := NAME.match(p.name))]
    return [path for _, path in sorted(found, reverse=True)]


def load_checkpoint(directory: Path | None, current_identity: dict):
    """(model, state, best weights) of the newest sound checkpoint, else None.

    A checkpoint written with other hyperparameters is refused (ConfigError naming them)."""
    if directory is None or not directory.is_dir():
        return None
    _clean_leftovers(directory)
    for path in _checkpoints(directory):
        try:
            state = json.loads((path / STATE_FILE).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("skipping checkpoint %s: unreadable %s (%s)", path, STATE_FILE, exc)
            continue
        check_identity(state.get("identity", {}), current_identity, path)
        loaded = _load(path, state)
        if loaded is not None:
            log.info("resuming from checkpoint %s after epoch %d", path, state["epoch"])
            return loaded
    return None


def _clean_leftovers(directory: Path) -> None:
    """Delete interrupted writes; put back a checkpoint renamed aside whose replacement never came."""
    for stale in directory.glob(".tmp-ckpt-*"):
        log.info("removing %s, a checkpoint whose writing was interrupted", stale)
        shutil.rmtree(stale, ignore_errors=True)
    for aside in directory.glob(".old-ckpt-*"):
        target = directory / aside.name[len(".old-"):].rsplit("-", 1)[0]
        if NAME.match(target.name) and not target.exists():
            log.info("restoring %s, whose replacement was interrupted", target)
            os.rename(aside, target)
        else:
            shutil.rmtree(aside, ignore_errors=True)


def _files_match(path: Path, state: dict) -> bool:
    expected = state.get("files_sha256")
    if expected is None:  # written before checkpoints recorded every file
        return True
    actual = file_digests(path)
    if actual != expected:
        changed = sorted(set(actual) ^ set(expected) | {n for n in actual if actual[n] != expected.get(n)})
        log.warning("skipping checkpoint %s: %s do not match the digests in %s", path, ", ".join(changed), STATE_FILE)
        return False
    return True


def _load(path: Path, state: dict):
    import keras

    if not _files_match(path, state):
        return None
    try:
        model = keras.models.load_model(path / MODEL_FILE)
    except Exception as exc:  # a file cut short: try the checkpoint before
        log.warning("skipping checkpoint %s: %s cannot be loaded (%s)", path, MODEL_FILE, exc)
        return None
    if weights_digest(model.get_weights()) != state.get("weights_sha256"):
        log.warning("skipping checkpoint %s: its weights do not match the digest in %s", path, STATE_FILE)
        return None
    best = None
    if (path / BEST_FILE).exists():
        try:
            with np.load(path / BEST_FILE) as archive:
                best = [archive[f"arr_{i}"] for i in range(len(archive.files))]
        except Exception as exc:  # a file cut short: try the checkpoint before
            log.warning("skipping checkpoint %s: %s cannot be loaded (%s)", path, BEST_FILE, exc)
            return None
    return model, state, best
