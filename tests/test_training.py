"""The training entry point, trained for real on Fashion-MNIST subsets."""
from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from training import environment
from training.callbacks import metric_line
from training.local import prepare_opt_ml, stage_source_dir
from training.metrics import METRIC_DEFINITIONS
from training.models import ConfigError, ModelConfig, build_model, model_summary, receptive_field
from training.train import main, run_training

from .fixtures_data import png_bytes

FAST_MLP = {"model": "mlp", "dense": "32", "epochs": 1, "batch_size": 128, "max_train_samples": 1500,
            "max_test_samples": 300, "verbose": 0, "export_onnx": "false"}


# --- model specs -----------------------------------------------------------------------------------

def test_config_round_trips_through_json_and_hyperparameters():
    config = ModelConfig(depth=3, filters=16, kernel_size=5, stride=1, padding="valid", pooling="avg",
                         batch_norm=True, dropout=0.25, dense=(256, 64))
    assert ModelConfig.from_json(config.to_json()) == config
    hps = config.to_hyperparameters()
    assert all(isinstance(value, str) for value in hps.values())
    assert ModelConfig.from_hyperparameters(hps) == ModelConfig(**{**config.to_dict(), "input_shape": (28, 28, 1)})


def test_invalid_combination_names_the_layer():
    with pytest.raises(ConfigError, match=r"layer block3_conv1: a 7x7 kernel .* 'valid'"):
        ModelConfig(depth=3, kernel_size=7, padding="valid").validate()
    with pytest.raises(ConfigError, match="layer block3_pool: max pooling of size 2 leaves a 0x0"):
        ModelConfig(input_shape=(4, 4, 1), depth=3, pooling="max").validate()
    with pytest.raises(ConfigError, match="'pooling'"):
        ModelConfig(pooling="median").validate()


def test_summary_counts_params_and_flops_per_layer():
    config = ModelConfig(depth=1, filters=8, kernel_size=3, dense=(16,))
    model = build_model(config)
    summary = model_summary(model)
    assert summary["total_params"] == model.count_params()
    conv = next(row for row in summary["layers"] if row["name"] == "block1_conv1")
    assert conv["params"] == 3 * 3 * 1 * 8 + 8
    assert conv["flops"] == 2 * 28 * 28 * 3 * 3 * 1 * 8 + 28 * 28 * 8
    assert summary["flops_per_image"] == sum(row["flops"] for row in summary["layers"])
    assert receptive_field(ModelConfig(depth=2, kernel_size=3)) == 10


def test_metric_definitions_scrape_the_log_lines():
    epoch = metric_line(epoch=3, loss=0.25, accuracy=0.9, val_loss=0.3, val_accuracy=0.88, seconds=1.5)
    final = metric_line(final="test", test_loss=0.31, test_accuracy=0.87, val_accuracy=0.88, params=1000)
    found = {}
    for definition in METRIC_DEFINITIONS:
        for line in (epoch, final):
            match = re.search(definition["Regex"], line)
            if match:
                found[definition["Name"]] = float(match.group(1))
    assert found == {"train:loss": 0.25, "train:accuracy": 0.9, "validation:loss": 0.3,
                     "validation:accuracy": 0.88, "epoch:seconds": 1.5, "test:loss": 0.31, "test:accuracy": 0.87}


def test_tf_config_from_sagemaker_hosts():
    config = environment.tf_config(["algo-2", "algo-1", "algo-3"], "algo-3")
    assert config == {"cluster": {"worker": ["algo-1:2222", "algo-2:2222", "algo-3:2222"]},
                      "task": {"type": "worker", "index": 2}}
    with pytest.raises(ValueError, match="algo-9"):
        environment.tf_config(["algo-1"], "algo-9")


def test_script_mode_arguments_and_sm_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("SM_HPS", json.dumps({"epochs": 4, "filters": 8}))
    monkeypatch.setenv("SM_CHANNEL_TRAINING", "/data/training")
    monkeypatch.setenv("SM_MODEL_DIR", str(tmp_path / "model"))
    monkeypatch.setenv("SM_HOSTS", json.dumps(["algo-1", "algo-2"]))
    monkeypatch.setenv("SM_CURRENT_HOST", "algo-2")
    env = environment.resolve(["--epochs", "6", "--model_dir", "s3://bucket/job/model", "--kernel-size=5"],
                              root=tmp_path)
    assert env.hyperparameters == {"epochs": "6", "filters": 8, "kernel_size": "5"}
    assert env.channels == {"training": "/data/training"}
    assert env.model_dir == tmp_path / "model"
    assert env.hosts == ["algo-1", "algo-2"] and not env.is_chief


# --- training for real -----------------------------------------------------------------------------

def test_entry_point_trains_a_real_cnn(trained_model_dir, fashion_test_images):
    import tensorflow as tf

    for name in ("1/saved_model.pb", "1/variables", "model.keras", "labels.json", "config.json",
                 "metrics.json", "model_summary.json"):
        assert (trained_model_dir / name).exists(), name
    assert not [p for p in trained_model_dir.iterdir() if p.name.startswith(".staging")]
    labels = json.loads((trained_model_dir / "labels.json").read_text())
    assert len(labels) == 10 and labels[0] == "T-shirt/top" and labels[9] == "Ankle boot"
    config = json.loads((trained_model_dir / "config.json").read_text())
    assert config["preprocessing"]["height"] == 28 and config["preprocessing"]["channels"] == 1
    metrics = json.loads((trained_model_dir / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.6 and metrics["num_train"] + metrics["num_val"] == 6000
    assert len(metrics["history"]["val_accuracy"]) == 1 and metrics["params"] > 0
    assert np.sum(metrics["confusion_matrix"]) == metrics["num_test"] == 1000

    images, truth = fashion_test_images
    serving = tf.saved_model.load(str(trained_model_dir / "1")).signatures["serving_default"]
    probabilities = serving(images=tf.constant(images.astype(np.float32) * config["preprocessing"]["rescale"]))
    probabilities = probabilities["probabilities"].numpy()
    assert probabilities.shape == (len(images), 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert (probabilities.argmax(axis=1) == truth).mean() > 0.6


def test_staged_source_dir_runs_like_sagemaker(fashion_subset_dir, tmp_path):
    code = stage_source_dir(tmp_path / "code")
    assert (code / "train.py").exists() and (code / "requirements.txt").exists()
    opt_ml = tmp_path / "opt_ml"
    channel = opt_ml / "input" / "data" / "training"  # SageMaker's default channel name
    shutil.copytree(fashion_subset_dir, channel)
    (opt_ml / "input" / "config").mkdir(parents=True)
    hps = {"model": "cnn", "filters": "8", "dense": "32", "max_train_samples": "1500", "max_test_samples": "300",
           "verbose": "0", "export_onnx": "false"}
    (opt_ml / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hps))
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")}
    env.update({"SM_MODEL_DIR": str(opt_ml / "model"), "SM_CHANNEL_TRAINING": str(channel),
                "SM_OUTPUT_DATA_DIR": str(opt_ml / "output" / "data"), "SM_HPS": json.dumps(hps),
                "SM_HOSTS": '["algo-1"]', "SM_CURRENT_HOST": "algo-1", "SM_NUM_GPUS": "0",
                "CONVLAB_OPT_ML": str(opt_ml), "TF_CPP_MIN_LOG_LEVEL": "2"})
    # Script mode: hyperparameters also arrive as arguments, plus the S3 model_dir AWS's container adds.
    result = subprocess.run([sys.executable, "train.py", "--epochs", "1", "--model_dir", "s3://bucket/job/model"],
                            cwd=code, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (code / "training" / "__pycache__").is_dir(), "the staged copy of the package was not the one imported"
    assert re.search(r"convlab-metrics epoch=1 loss=\S+ accuracy=\S+", result.stdout)
    assert re.search(r"convlab-metrics final=test .*test_accuracy=0\.\d+", result.stdout)
    metrics = json.loads((opt_ml / "model" / "metrics.json").read_text())
    assert metrics["num_train"] + metrics["num_val"] == 1500 and metrics["test_accuracy"] > 0.3
    assert (opt_ml / "model" / "1" / "saved_model.pb").exists()
    assert (opt_ml / "output" / "data" / "metrics.json").exists()
    assert not (opt_ml / "output" / "failure").exists()


def test_restart_resumes_from_the_last_checkpoint(fashion_subset_dir, tmp_path, caplog):
    channels = {"train": str(fashion_subset_dir)}
    checkpoints = tmp_path / "checkpoints"
    first = run_training(dict(FAST_MLP, epochs=1), channels, str(tmp_path / "m1"), checkpoint_dir=str(checkpoints))
    assert json.loads((checkpoints / "ckpt-1" / "state.json").read_text())["epoch"] == 1
    caplog.set_level("INFO", logger="convlab.train")
    second = run_training(dict(FAST_MLP, epochs=2), channels, str(tmp_path / "m2"), checkpoint_dir=str(checkpoints))
    assert "resuming from checkpoint" in caplog.text and "after epoch 1" in caplog.text
    assert second["epochs_completed"] == 2
    assert len(second["seconds_per_epoch"]) == 2
    assert second["seconds_per_epoch"][0] == first["seconds_per_epoch"][0]  # epoch 1 was not trained again
    assert second["history"]["loss"][0] == first["history"]["loss"][0]


# --- bad input -------------------------------------------------------------------------------------

def _write_idx_images(path, count, rows=28, cols=28, truncate=0):
    header = np.array([0x803, count, rows, cols], dtype=">i4").tobytes()
    body = np.zeros(count * rows * cols, dtype=np.uint8).tobytes()
    with gzip.open(path, "wb") as handle:
        handle.write(header + body[:len(body) - truncate])


def _bad_channels(tmp_path):
    """name -> (channel builder, hyperparameters, text the failure must contain)."""

    def corrupt_png(channel):
        for cls in ("boot", "shirt"):
            (channel / cls).mkdir(parents=True)
            for i in range(3):
                (channel / cls / f"{i}.png").write_bytes(png_bytes(np.full((28, 28, 1), 40 * i, np.uint8)))
        (channel / "shirt" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png")
        return "broken.png"

    def truncated_idx(channel):
        channel.mkdir(parents=True)
        _write_idx_images(channel / "train-images-idx3-ubyte.gz", 20, truncate=500)
        with gzip.open(channel / "train-labels-idx1-ubyte.gz", "wb") as handle:
            handle.write(np.array([0x801, 20], dtype=">i4").tobytes() + bytes(20))
        return "train-images-idx3-ubyte.gz"

    def csv_text_pixel(channel):
        channel.mkdir(parents=True)
        rows = ["label," + ",".join(f"pixel{i + 1}" for i in range(4))]
        rows += [f"{i % 2},0,0,0,0" for i in range(10)] + ["1,0,zero,0,0"]
        (channel / "train.csv").write_text("\n".join(rows) + "\n")
        return "train.csv"

    def labels_out_of_range(channel):
        channel.mkdir(parents=True)
        np.savez(channel / "data.npz", x=np.zeros((10, 8, 8), np.uint8), y=np.array([0, 1] * 4 + [-3, 1]))
        return "data.npz"

    def empty_channel(channel):
        channel.mkdir(parents=True)
        return str(channel.name)

    return {
        "corrupt png": (corrupt_png, {}, None),
        "truncated idx": (truncated_idx, {}, None),
        "csv with a non-numeric pixel": (csv_text_pixel, {}, None),
        "labels out of range": (labels_out_of_range, {}, None),
        "empty channel": (empty_channel, {}, None),
        "unknown hyperparameter": (None, {"kernal_size": "3"}, "kernal_size"),
        "negative epochs": (None, {"epochs": "-2"}, "'epochs'"),
    }


@pytest.mark.parametrize("case", list(_bad_channels(None)))
def test_bad_input_fails_with_one_clear_line(case, tmp_path, fashion_subset_dir):
    build, hps, expected = _bad_channels(tmp_path)[case]
    source = tmp_path / "channel"
    if build is None:
        source = fashion_subset_dir
    else:
        expected = build(source)
    root = prepare_opt_ml(tmp_path / "work", {"train": str(source)}, {**FAST_MLP, **hps})
    assert main([], root=root) == 1
    failure = (root / "output" / "failure").read_text()
    assert expected in failure, failure
    assert "Traceback" not in failure and len(failure.strip().splitlines()) == 1
    assert list((root / "model").iterdir()) == [], "nothing may be left in the model dir"


def test_local_mode_reports_a_bad_channel_or_file_in_one_line(tmp_path, capsys):
    from convlab.train_cli import main as train_cli

    assert train_cli(["--local", "--train", str(tmp_path / "missing"), "--work-dir", str(tmp_path / "w")]) == 2
    assert f"--train {tmp_path / 'missing'}: no such file or directory" in capsys.readouterr().err
    (tmp_path / "hps.json").write_text("[1, 2]")
    assert train_cli(["--local", "--train", str(tmp_path), "--hyperparameters", str(tmp_path / "hps.json"),
                      "--work-dir", str(tmp_path / "w")]) == 2
    assert "expected a JSON object" in capsys.readouterr().err


def test_mixed_bfloat16_trains_and_exports_a_float32_model(fashion_subset_dir, fashion_test_images, tmp_path):
    import keras
    import onnxruntime as ort

    hyperparameters = {"model": "cnn", "filters": 8, "depth": 2, "dense": "32", "epochs": 2, "batch_size": 64,
                       "max_train_samples": 3000, "max_test_samples": 500, "verbose": 0, "precision": "mixed_bfloat16"}
    metrics = run_training(hyperparameters, {"train": str(fashion_subset_dir)}, str(tmp_path / "model"))
    assert metrics["test_accuracy"] > 0.6, metrics["test_accuracy"]
    assert keras.mixed_precision.global_policy().name == "float32"  # put back after training
    model = keras.models.load_model(tmp_path / "model" / "model.keras")
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    images = fashion_test_images[0][:64].astype(np.float32) / 255
    session = ort.InferenceSession(str(tmp_path / "model" / "model.onnx"), providers=["CPUExecutionProvider"])
    exported = session.run(None, {"images": images})[0]
    np.testing.assert_allclose(exported, model.predict(images, verbose=0), atol=1e-4)
    labels = fashion_test_images[1][:64]
    assert (exported.argmax(1) == labels).mean() > 0.5
    with pytest.raises(ConfigError, match="'precision': expected one of"):
        run_training(dict(hyperparameters, precision="half"), {"train": str(fashion_subset_dir)}, str(tmp_path / "x"))
