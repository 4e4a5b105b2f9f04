"""training/onnx_export.py: the SavedModel converted by tf2onnx gives the SavedModel's answers."""
from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training.onnx_export import export_onnx

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def exported(trained_model_dir, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("onnx") / "model"
    model_dir.mkdir()
    shutil.copytree(trained_model_dir / "1", model_dir / "1")
    return model_dir, export_onnx(model_dir)


def test_export_writes_model_onnx_with_the_contract_names(exported):
    import onnxruntime as ort

    model_dir, path = exported
    assert path == model_dir / "model.onnx" and path.stat().st_size > 10_000
    assert not (model_dir / "model.onnx.partial").exists()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert session.get_inputs()[0].shape[1:] == [28, 28, 1]
    assert [o.name for o in session.get_outputs()] == ["probabilities"]


def test_onnx_matches_the_savedmodel_on_real_test_images(exported, fashion_test_images):
    import onnxruntime as ort
    import tensorflow as tf

    model_dir, path = exported
    images = fashion_test_images[0].astype(np.float32) / 255.0
    signature = tf.saved_model.load(str(model_dir / "1")).signatures["serving_default"]
    expected = signature(images=tf.constant(images))["probabilities"].numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["probabilities"], {"images": images})[0]
    assert got.shape == expected.shape == (len(images), 10)
    assert np.abs(got - expected).max() < 1e-5
    assert (got.argmax(1) == expected.argmax(1)).all()
    for size in (1, 7):  # dynamic batch dimension
        np.testing.assert_allclose(session.run(None, {"images": images[:size]})[0], expected[:size], atol=1e-5)


def test_without_tf2onnx_nothing_is_written_and_a_warning_says_why(exported, tmp_path):
    """A Python without site-packages (-S) has no tf2onnx: the module still imports (standard
    library only) and returns None."""
    model_dir, _ = exported
    bare = tmp_path / "model"
    shutil.copytree(model_dir / "1", bare / "1")
    script = (
        "import importlib.util, logging, sys\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stdout)\n"
        f"spec = importlib.util.spec_from_file_location('onnx_export', {str(REPO / 'training' / 'onnx_export.py')!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        f"print('RESULT', module.export_onnx({str(bare)!r}))\n"
    )
    result = subprocess.run([sys.executable, "-S", "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "RESULT None" in result.stdout
    assert "tf2onnx is not installed" in result.stdout
    assert not (bare / "model.onnx").exists()


def test_a_missing_savedmodel_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model/1: no saved_model.pb"):
        export_onnx(tmp_path / "model")


def test_a_failed_conversion_leaves_no_model_onnx(tmp_path, caplog):
    """A SavedModel folder whose saved_model.pb is corrupt: tf2onnx fails, the warning carries its
    error, and serving falls back to the SavedModel (no model.onnx, no partial file)."""
    model_dir = tmp_path / "model"
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "1" / "saved_model.pb").write_bytes(b"this is not a protocol buffer")
    with caplog.at_level(logging.WARNING, logger="convlab.onnx"):
        assert export_onnx(model_dir) is None
    assert "tf2onnx failed" in caplog.text
    assert not list(model_dir.glob("model.onnx*"))


def test_training_exports_the_conv_blocks_beside_an_unchanged_model_onnx(trained_model_dir, fashion_test_images):
    """explain.onnx (for the try-it page) gives the conv blocks' outputs; model.onnx still has one output."""
    import keras
    import onnxruntime as ort

    document = json.loads((trained_model_dir / "explain.json").read_text())
    blocks = [b["name"] for b in document["blocks"]]
    assert blocks == ["block1_pool", "block2_pool"]
    main = ort.InferenceSession(str(trained_model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in main.get_outputs()] == ["probabilities"]
    explain = ort.InferenceSession(str(trained_model_dir / "explain.onnx"), providers=["CPUExecutionProvider"])
    assert sorted(o.name for o in explain.get_outputs()) == sorted(blocks)
    images = fashion_test_images[0][:4].astype(np.float32) / 255.0
    model = keras.saving.load_model(trained_model_dir / "model.keras", compile=False)
    probe = keras.Model(model.inputs, [model.get_layer(name).output for name in blocks])
    for block, got, want in zip(document["blocks"], explain.run(blocks, {"images": images}),
                                probe([images], training=False)):
        assert list(got.shape) == [4, *block["shape"]]
        np.testing.assert_allclose(got, np.asarray(want), atol=1e-4)
    kernel = np.asarray(model.get_layer("block1_conv1").kernel)
    assert document["filters"]["shape"] == list(kernel.shape)
    np.testing.assert_allclose(document["filters"]["weights"], kernel, atol=1e-6)


def test_the_one_thread_session_for_small_calls_gives_the_same_answers(trained_model_dir, fashion_test_images):
    from inference.backends import OnnxBackend

    images = fashion_test_images[0][:8].astype(np.float32) / 255
    backend = OnnxBackend(trained_model_dir / "model.onnx", threads=2)
    backend.calibrate((28, 28, 1))
    assert backend.one_thread_images in (0, 1, 2, 4, 8, 16, 32)
    backend.one_thread_images = 0
    full = [backend.predict(images[:size]) for size in (1, 8)]
    backend.one_thread_images = 8
    small = [backend.predict(images[:size]) for size in (1, 8)]
    for a, b in zip(full, small):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert full[1].shape == (8, 10) and (full[1].argmax(1) == small[1].argmax(1)).all()
    # one thread asked for: no second session, every call on the one there is
    single = OnnxBackend(trained_model_dir / "model.onnx", threads=1)
    single.calibrate((28, 28, 1))
    assert single.one_thread_images == 0
    np.testing.assert_allclose(single.predict(images[:1]), full[0], atol=1e-5)
