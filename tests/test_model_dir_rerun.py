"""A rerun into the same model_dir replaces it whole, and model.onnx is served only when it was
exported from the same weights as the SavedModel beside it (a digest in config.json and in
model.onnx's metadata)."""
from __future__ import annotations

import json
import shutil

import pytest

from inference.backends import load_model
from inference.errors import ModelLoadError
from tests.fixtures_data import SMALL_CNN
from training.train import run_training

RUN = dict(SMALL_CNN, depth=1, filters=8, dense="16", max_train_samples=600, max_test_samples=100)


def onnx_digest(path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta() \
        .custom_metadata_map.get("convlab_weights_sha256")


def test_a_rerun_replaces_the_model_dir_and_a_stale_onnx_is_refused(fashion_subset_dir, tmp_path):
    channels = {"train": str(fashion_subset_dir)}
    model_dir = tmp_path / "model"
    run_training(dict(RUN), channels, str(model_dir))
    digest = json.loads((model_dir / "config.json").read_text())["weights_sha256"]
    assert len(digest) == 64
    assert onnx_digest(model_dir / "model.onnx") == digest == onnx_digest(model_dir / "explain.onnx")
    shutil.copy(model_dir / "model.onnx", tmp_path / "first.onnx")
    (model_dir / "notes.txt").write_text("left by the first run")

    run_training(dict(RUN, seed=8, export_onnx="false"), channels, str(model_dir))
    assert sorted(p.name for p in model_dir.iterdir()) == sorted(
        ["1", "model.keras", "labels.json", "config.json", "metrics.json", "model_summary.json", "explain.json",
         "input.json", "samples"])
    second = json.loads((model_dir / "config.json").read_text())["weights_sha256"]
    assert second != digest
    assert load_model(model_dir).info["backend"] == "savedmodel"

    shutil.copy(tmp_path / "first.onnx", model_dir / "model.onnx")  # the first run's, beside the second's
    with pytest.raises(ModelLoadError, match=rf"model\.onnx.*{digest[:12]}.*{second[:12]}"):
        load_model(model_dir, "auto")
    with pytest.raises(ModelLoadError, match="other weights"):
        load_model(model_dir, "onnx")
    assert load_model(model_dir, "savedmodel").info["backend"] == "savedmodel"
