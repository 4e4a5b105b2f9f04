"""The Docker path's training tree after a first run, as a newcomer uses it: `convlab opt-ml` then the
container's `train` program (run outside Docker against the emulated /opt/ml, as tests/test_docker.py
does). A second data set laid out in the same tree starts fresh and says what was removed; a
checkpoint kept on purpose is never resumed on other data: the run fails, naming the channel."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from convlab.opt_ml import main as opt_ml_main
from tests.test_docker import SCRIPTS, program_env
from training.checkpoints import identity
from training.data.fingerprint import describe_change, fingerprint

TINY = ["--hp", "model=mlp", "--hp", "dense=16", "--hp", "epochs=1", "--hp", "max_train_samples=600",
        "--hp", "max_test_samples=200", "--hp", "export_onnx=false", "--hp", "verbose=0"]


@pytest.fixture(scope="module")
def other_data(fashion_mnist, tmp_path_factory) -> Path:
    """Another 28x28, 10-class data set: other images, IDX files with the same names."""
    from training.data import write_idx

    train, test = fashion_mnist
    dest = tmp_path_factory.mktemp("other-data")
    write_idx(dest, train.images[-2000:], train.labels[-2000:], prefix="train")
    write_idx(dest, test.images[-500:], test.labels[-500:], prefix="t10k")
    return dest


def train(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPTS / "train")], env=program_env(root), capture_output=True, text=True,
                          timeout=300)


def test_a_new_layout_is_fresh_and_a_kept_checkpoint_is_not_resumed_on_other_data(fashion_subset_dir, other_data,
                                                                                     tmp_path, capsys):
    root = tmp_path / "opt_ml"
    assert opt_ml_main([str(root), "--train", str(fashion_subset_dir), *TINY]) == 0
    first = train(root)
    assert first.returncode == 0, first.stderr[-3000:]
    assert list((root / "checkpoints").glob("ckpt-*")) and (root / "model" / "metrics.json").is_file()
    capsys.readouterr()

    # The newcomer lays out another data set in the same tree: nothing of the first run survives.
    assert opt_ml_main([str(root), "--train", str(other_data), *TINY]) == 0
    said = capsys.readouterr().out
    assert "removed what an earlier layout or run left: model/" in said and "checkpoints/ (" in said
    assert not (root / "checkpoints").exists() or not any((root / "checkpoints").iterdir())
    second = train(root)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming from checkpoint" not in second.stdout + second.stderr
    assert json.loads((root / "model" / "metrics.json").read_text())["epochs_completed"] == 1

    # Kept on purpose, then the data changes: the run refuses, naming what changed, and exits non-zero.
    assert opt_ml_main([str(root), "--train", str(fashion_subset_dir), "--keep-checkpoints", *TINY]) == 0
    said = capsys.readouterr().out
    assert "kept checkpoints/ (" in said and "checkpoints/" not in said.split("kept")[0]
    refused = train(root)
    assert refused.returncode != 0
    failure = (root / "output" / "failure").read_text()
    assert "was written while training on other data: channel 'train' was 4 files" in failure, failure
    assert "now 4 files" in failure and "--keep-checkpoints" in failure


def test_the_fingerprint_names_each_channel_that_changed(fashion_subset_dir, other_data, tmp_path):
    same = fingerprint({"train": str(fashion_subset_dir)})
    assert fingerprint({"train": str(fashion_subset_dir)}) == same
    hidden = tmp_path / "copy"
    hidden.mkdir()
    for path in fashion_subset_dir.iterdir():
        (hidden / path.name).write_bytes(path.read_bytes())
    (hidden / ".DS_Store").write_bytes(b"x")  # skipped by the readers, so by the fingerprint too
    assert fingerprint({"train": str(hidden)}) == same
    changed = fingerprint({"train": str(other_data), "test": str(other_data)})
    phrases = describe_change(same, changed)
    assert len(phrases) == 2 and phrases[1] == "channel 'train' was " + phrases[1].split(" was ")[1]
    assert phrases[0].startswith("channel 'test' was absent, now 4 files")
    assert identity({}, {}, same)["data"] == same and "data" not in identity({}, {})
