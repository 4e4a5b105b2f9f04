"""AWS's own container code drives convlab: sagemaker-training with the TensorFlow container's
entry module trains the staged source dir, sagemaker-inference (under multi-model-server's worker)
serves the packaged model, and the TensorFlow Serving container's handler chain runs input_handler
and output_handler against TF Serving's REST API."""
from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from training import environment
from training.hyperparameters import parse_hyperparameters
from training.local import stage_source_dir

from .fixtures_data import png_bytes

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
TINY_CNN = {"model": "cnn", "depth": 2, "filters": 8, "dense": "32", "epochs": 1, "batch_size": 64,
            "max_train_samples": 1500, "max_test_samples": 300, "verbose": 0, "export_onnx": False}
# What the TensorFlow training container sets in its image (SAGEMAKER_TRAINING_MODULE) and what
# SageMaker sets for a job; SM_STUDIO_LOCAL_MODE skips the wait for algo-1's DNS name.
TF_CONTAINER_ENV = {"SAGEMAKER_TRAINING_MODULE": "sagemaker_tensorflow_container.training:main",
                    "TRAINING_JOB_NAME": "convlab-toolkit-job", "SM_STUDIO_LOCAL_MODE": "True",
                    "TF_CPP_MIN_LOG_LEVEL": "2"}


def sdk_encoded(hyperparameters: dict) -> dict[str, str]:
    """hyperparameters.json as the SageMaker SDK writes it: every value JSON-encoded."""
    return {name: json.dumps(value) for name, value in hyperparameters.items()}


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without the worktree on PYTHONPATH (the containers do not have convlab)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "CONVLAB_OPT_ML",
                                                            "SAGEMAKER_BASE_DIR")
           and not k.startswith("SM_")}
    env.update(extra)
    return env


def sagemaker_tree(base: Path, channel: Path, hyperparameters: dict[str, str]) -> Path:
    """An /opt/ml tree laid out as SageMaker lays it out before the container starts."""
    config = base / "input" / "config"
    config.mkdir(parents=True)
    shutil.copytree(channel, base / "input" / "data" / "train")
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (config / "inputdataconfig.json").write_text(json.dumps({"train": {
        "TrainingInputMode": "File", "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}}))
    (config / "resourceconfig.json").write_text(json.dumps({
        "current_host": "algo-1", "hosts": ["algo-1"], "current_instance_type": "ml.m5.large",
        "current_group_name": "homogeneousCluster", "network_interface_name": "eth0",
        "instance_groups": [{"instance_group_name": "homogeneousCluster", "instance_type": "ml.m5.large",
                             "hosts": ["algo-1"]}]}))
    for sub in ("code", "model", "output/data"):
        (base / sub).mkdir(parents=True)
    return base


def upload_source_dir(s3, tmp_path: Path, bucket: str) -> str:
    """`convlab stage-source`, packed and uploaded as the SDK uploads sourcedir.tar.gz."""
    source = stage_source_dir(tmp_path / "source")
    archive = tmp_path / "sourcedir.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(source.iterdir()):
            tar.add(path, arcname=path.name)
    s3.upload_file(str(archive), bucket, "convlab-toolkit-job/source/sourcedir.tar.gz")
    return f"s3://{bucket}/convlab-toolkit-job/source/sourcedir.tar.gz"


# --- training: sagemaker-training + the TensorFlow container's entry module --------------------------

@pytest.mark.parametrize("tuning", [False, True], ids=["training-job", "tuning-job"])
def test_tensorflow_container_trains_the_staged_source_dir(aws, fashion_subset_dir, tmp_path, tuning):
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="convlab-toolkit")
    hps = dict(TINY_CNN, sagemaker_program="train.py", sagemaker_container_log_level=20,
               sagemaker_submit_directory=upload_source_dir(s3, tmp_path, "convlab-toolkit"),
               sagemaker_region=aws.region, sagemaker_job_name="convlab-toolkit-job",
               model_dir="s3://convlab-toolkit/convlab-toolkit-job/model")
    if tuning:  # what SageMaker adds to each training job of a hyperparameter tuning job
        hps.update(_tuning_objective_metric="validation:accuracy", sagemaker_estimator_module="sagemaker.tensorflow")
    base = sagemaker_tree(tmp_path / "opt" / "ml", fashion_subset_dir, sdk_encoded(hps))
    # The container's `train` program: sagemaker_training.cli.train -> trainer.train() -> the framework module.
    result = subprocess.run([sys.executable, "-m", "sagemaker_training.cli.train"], cwd=tmp_path,
                            env=clean_env(SAGEMAKER_BASE_DIR=str(base), **TF_CONTAINER_ENV),
                            capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert (base / "code" / "train.py").exists() and (base / "code" / "training" / "train.py").exists()
    # The model_dir hyperparameter arrives as --model_dir s3://...; for a tuning job with the job name added.
    expected_s3 = "s3://convlab-toolkit/convlab-toolkit-job/model" + ("/convlab-toolkit-job/model" if tuning else "")
    assert f"--model_dir {expected_s3}" in output
    assert re.search(r"convlab-metrics epoch=1 loss=\S+ accuracy=\S+", output)
    assert re.search(r"convlab-metrics final=test .*test_accuracy=0\.\d+", output)
    metrics = json.loads((base / "model" / "metrics.json").read_text())
    assert metrics["num_train"] + metrics["num_val"] == 1500 and metrics["test_accuracy"] > 0.3
    assert metrics["config"]["model"] == "cnn" and metrics["config"]["filters"] == 8
    assert (base / "model" / "1" / "saved_model.pb").exists()
    assert (base / "output" / "success").exists() and not (base / "output" / "failure").exists()


def test_tensorflow_container_reports_a_bad_hyperparameter(aws, fashion_subset_dir, tmp_path):
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="convlab-toolkit")
    hps = dict(TINY_CNN, optimzer="adam", sagemaker_program="train.py",
               sagemaker_submit_directory=upload_source_dir(s3, tmp_path, "convlab-toolkit"))
    base = sagemaker_tree(tmp_path / "opt" / "ml", fashion_subset_dir, sdk_encoded(hps))
    result = subprocess.run([sys.executable, "-m", "sagemaker_training.cli.train"], cwd=tmp_path,
                            env=clean_env(SAGEMAKER_BASE_DIR=str(base), **TF_CONTAINER_ENV),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    failure = (base / "output" / "failure").read_text()
    assert "unknown hyperparameter 'optimzer'" in failure and "optimizer" in failure


# --- hyperparameters.json as the SDK writes it, and a tuning job's reserved names ------------------

def _config_dir(root: Path, hyperparameters: dict) -> Path:
    (root / "input" / "config").mkdir(parents=True)
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    return root


def test_sdk_encoded_hyperparameters_are_decoded(tmp_path, monkeypatch):
    for name in ("SM_HPS", "SM_MODEL_DIR", "CONVLAB_OPT_ML"):
        monkeypatch.delenv(name, raising=False)
    encoded = sdk_encoded({"model": "cnn", "epochs": 3, "learning_rate": 0.002, "dense": "64,32",
                           "batch_norm": True, "model_dir": "s3://bucket/job/model",
                           "_tuning_objective_metric": "validation:accuracy", "sagemaker_program": "train.py",
                           "default_user_module_name": "train"})
    assert encoded["model"] == '"cnn"' and encoded["epochs"] == "3"
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(_config_dir(tmp_path / "ml", encoded)))
    env = environment.resolve([])
    assert env.root == tmp_path / "ml" and env.model_dir == tmp_path / "ml" / "model"
    assert env.hyperparameters["model"] == "cnn" and env.hyperparameters["epochs"] == 3
    params, config = parse_hyperparameters(env.hyperparameters)
    assert (params.epochs, params.learning_rate) == (3, 0.002)
    assert (config.model, config.dense, config.batch_norm) == ("cnn", (64, 32), True)


def test_plain_string_hyperparameters_still_work(tmp_path, monkeypatch):
    """convlab's own writer and the console leave values unquoted; they are used as they are."""
    monkeypatch.delenv("SM_HPS", raising=False)
    root = _config_dir(tmp_path / "ml", {"model": "mlp", "epochs": "2", "dense": "64,32", "optimizer": "sgd",
                                         "export_onnx": "false", "padding": "same"})
    env = environment.resolve([], root)
    params, config = parse_hyperparameters(env.hyperparameters)
    assert (params.epochs, params.optimizer, params.export_onnx) == (2, "sgd", False)
    assert (config.model, config.dense, config.padding) == ("mlp", (64, 32), "same")


def test_bad_hyperparameters_name_the_file_and_the_name(tmp_path, monkeypatch):
    from training.models import ConfigError

    monkeypatch.delenv("SM_HPS", raising=False)
    root = _config_dir(tmp_path / "ml", sdk_encoded({"epochs": "three"}))
    with pytest.raises(ConfigError, match=r"hyperparameter 'epochs': expected an integer, got 'three'"):
        parse_hyperparameters(environment.resolve([], root).hyperparameters)
    (root / "input" / "config" / "hyperparameters.json").write_text('["epochs", 3]')
    with pytest.raises(ValueError, match=r"hyperparameters\.json: expected a JSON object"):
        environment.resolve([], root)
    with pytest.raises(ConfigError, match=r"unknown hyperparameter '_epochs'"):
        parse_hyperparameters({"_epochs": 3, "_tuning_objective_metric": "val_accuracy"})


# --- train.py run as the script a SageMaker user points at -------------------------------------------

def _script_env(opt_ml: Path, channel: Path) -> dict[str, str]:
    hps = {k: str(v) for k, v in TINY_CNN.items()}
    return clean_env(SM_MODEL_DIR=str(opt_ml / "model"), SM_CHANNEL_TRAIN=str(channel),
                     SM_OUTPUT_DATA_DIR=str(opt_ml / "output" / "data"), SM_HPS=json.dumps(hps),
                     SM_HOSTS='["algo-1"]', SM_CURRENT_HOST="algo-1", SM_NUM_GPUS="0",
                     CONVLAB_OPT_ML=str(opt_ml), TF_CPP_MIN_LOG_LEVEL="2")


@pytest.mark.parametrize("layout", ["python training/train.py", "source_dir=training entry_script=train.py"])
def test_train_py_runs_as_a_script(fashion_subset_dir, tmp_path, layout):
    opt_ml = tmp_path / "opt_ml"
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    if layout.startswith("python"):
        command = [sys.executable, str(REPO / "training" / "train.py"), "--model_dir", "s3://bucket/job/model"]
    else:  # the training folder itself uploaded as the code dir (/opt/ml/code), run from inside it
        cwd = tmp_path / "code"
        shutil.copytree(REPO / "training", cwd, ignore=shutil.ignore_patterns("__pycache__"))
        command = [sys.executable, "train.py", "--model_dir", "s3://bucket/job/model"]
    result = subprocess.run(command, cwd=cwd, env=_script_env(opt_ml, fashion_subset_dir),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"convlab-metrics final=test .*test_accuracy=0\.\d+", result.stdout)
    metrics = json.loads((opt_ml / "model" / "metrics.json").read_text())
    assert metrics["num_train"] + metrics["num_val"] == 1500
    assert (opt_ml / "model" / "1" / "saved_model.pb").exists()
    if layout.startswith("source_dir"):
        assert (cwd / "__pycache__").is_dir(), "the uploaded copy of the package was not the one imported"


def test_train_py_still_imports_as_a_module(tmp_path):
    """`python -m training.train` and `from training.train import run_training` are unchanged."""
    result = subprocess.run([sys.executable, "-c", "from training.train import run_training, main; "
                             "import training.train as t; print(t.__name__, callable(run_training))"],
                            cwd=REPO, env=clean_env(PYTHONPATH=str(REPO)), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and "training.train True" in result.stdout, result.stderr[-2000:]
    result = subprocess.run([sys.executable, "-m", "training.train", "--help"], cwd=REPO,
                            env=clean_env(PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "hyperparameters (--name value" in result.stdout


# --- serving: sagemaker-inference under multi-model-server's worker ----------------------------------

@pytest.fixture(scope="module")
def extracted_archive(trained_model_dir, tmp_path_factory):
    """model.tar.gz from deploy/package.py, extracted as SageMaker extracts it into /opt/ml/model."""
    from deploy.package import build_archive

    work = tmp_path_factory.mktemp("toolkit-serving")
    archive = build_archive(trained_model_dir, work / "model.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(work / "opt" / "ml" / "model", filter="data")
    return work / "opt" / "ml" / "model"


def _png_bomb() -> bytes:
    """A small PNG body that decodes to 25 million pixels."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (5000, 5000)).save(buffer, "PNG")
    return buffer.getvalue()


def _serve_with_toolkit(model_dir: Path, work: Path, requests: list[tuple[bytes, dict]]) -> list[dict]:
    listed = []
    for number, (body, headers) in enumerate(requests):
        (work / f"body-{number}").write_bytes(body)
        listed.append({"body_file": str(work / f"body-{number}"), "headers": headers})
    (work / "requests.json").write_text(json.dumps(listed))
    # sagemaker-inference's model server puts /opt/ml/model/code on the worker's PYTHONPATH.
    result = subprocess.run([sys.executable, str(TESTS / "toolkit_mms_worker.py"), str(model_dir),
                             str(work / "requests.json")], cwd=work, capture_output=True, text=True, timeout=600,
                            env=clean_env(PYTHONPATH=str(model_dir / "code"), TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 0, result.stderr[-3000:]
    answers = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(answers) == len(requests), result.stderr[-3000:]
    return answers


def test_sagemaker_inference_serves_the_archive(extracted_archive, trained_model_dir, fashion_test_images,
                                                tmp_path):
    images, labels = fashion_test_images
    count = 200
    png = {"Content-Type": "image/png", "Accept": "application/json"}
    requests = [(png_bytes(image), png) for image in images[:count]]
    batch = json.dumps({"instances": images[:20, ..., 0].tolist()}).encode()
    requests += [
        (batch, {"Content-Type": "application/json", "Accept": "*/*"}),  # a UTF-8 type, default Accept
        (png_bytes(images[0]), {"Content-Type": "image/png", "Accept": "text/csv"}),
        (b"\x89PNG\r\n\x1a\n not really", png),
        (b"", png),
        (b'{"instances": [[1, 2', {"Content-Type": "application/json"}),
        (_png_bomb(), png),
        (png_bytes(images[0]), {"Content-Type": "application/pdf"}),
        (png_bytes(images[0]), {"Content-Type": "image/png", "Accept": "image/gif"}),
    ]
    answers = _serve_with_toolkit(extracted_archive, tmp_path, requests)

    served = answers[:count]
    assert {a["status"] for a in served} == {200} and {a["content_type"] for a in served} == {"application/json"}
    predicted = [json.loads(a["body"])["predictions"][0]["class_index"] for a in served]
    accuracy = float(np.mean(np.array(predicted) == labels[:count]))
    expected = json.loads((trained_model_dir / "metrics.json").read_text())["test_accuracy"]
    assert accuracy > 0.6 and abs(accuracy - expected) < 0.1, (accuracy, expected)
    batch_answer, csv_answer = answers[count], answers[count + 1]
    assert batch_answer["status"] == 200 and len(json.loads(batch_answer["body"])["predictions"]) == 20
    assert [row["class_index"] for row in json.loads(batch_answer["body"])["predictions"]] == predicted[:20]
    assert csv_answer["status"] == 200 and csv_answer["content_type"] == "text/csv"

    errors = answers[count + 2:]
    assert [a["status"] for a in errors] == [400, 400, 400, 413, 415, 406]
    assert [a["phrase"] for a in errors] == ["Bad Request", "Bad Request", "Bad Request",
                                             "Request Entity Too Large", "Unsupported Media Type", "Not Acceptable"]
    for answer, text in zip(errors, ["not a readable image", "body is empty", "application/json",
                                     "5000x5000 pixels", "'application/pdf'", "'image/gif'"]):
        assert text in answer["body"].splitlines()[0], answer["body"][:300]


# --- serving: the TensorFlow Serving container's input_handler / output_handler ------------------------

def _archive_handler_module(model_dir: Path):
    """code/inference.py imported from its file, as the TF Serving container imports `inference`."""
    spec = importlib.util.spec_from_file_location("tfs_container_inference", model_dir / "code" / "inference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tf_serving_container_handlers_over_rest(extracted_archive, trained_model_dir, fashion_test_images):
    import requests

    from .toolkit_tfs import TFServingStandIn, make_context, run_handlers

    module = _archive_handler_module(extracted_archive)
    images, labels = fashion_test_images
    tfs = TFServingStandIn(str(extracted_archive / "1"))
    try:
        predicted = []
        for image in images[:100]:
            body = png_bytes(image)
            answer, content_type = run_handlers(module, body, make_context(tfs.rest_uri, "image/png", None, len(body)))
            assert content_type == "application/json"
            predicted.append(json.loads(answer)["predictions"][0]["class_index"])
        request = tfs.received[0]
        assert request["signature_name"] == "serving_default" and np.asarray(request["instances"]).shape == (1, 28, 28, 1)
        accuracy = float(np.mean(np.array(predicted) == labels[:100]))
        expected = json.loads((trained_model_dir / "metrics.json").read_text())["test_accuracy"]
        assert accuracy > 0.6 and abs(accuracy - expected) < 0.12, (accuracy, expected)

        npy = _npy(images[:3])
        answer, content_type = run_handlers(module, npy, make_context(tfs.rest_uri, "application/x-npy",
                                                                      "application/x-npy", len(npy)))
        assert content_type == "application/x-npy" and np.load(__import__("io").BytesIO(answer)).shape == (3, 10)

        failed = requests.post(tfs.rest_uri, data=json.dumps({"instances": [[1.0, 2.0]]}), timeout=60)
        assert failed.status_code == 400 and "error" in failed.json()
        with pytest.raises(ValueError, match=r"TensorFlow Serving answered 400"):
            module.output_handler(failed, make_context(tfs.rest_uri, "image/png", None, 0))
        with pytest.raises(module.InferenceError) as caught:
            run_handlers(module, b"", make_context(tfs.rest_uri, "image/png", None, 0))
        assert caught.value.status == 400 and "empty" in caught.value.message
        with pytest.raises(module.InferenceError) as caught:
            run_handlers(module, npy, make_context(tfs.rest_uri, "application/x-npy", "image/gif", len(npy)))
        assert caught.value.status == 406
    finally:
        tfs.close()


def _npy(images: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, images)
    return buffer.getvalue()


def test_a_model_trained_in_the_tensorflow_container_is_packaged_with_model_onnx(aws, fashion_subset_dir, tmp_path,
                                                                               fashion_test_images):
    """The container installs only the staged requirements, so its model_dir has no model.onnx
    (export_onnx=false stands in for the missing tf2onnx); the archive built from it carries one, and
    the training package wrote input.json there without convlab installed."""
    import boto3

    from deploy.package import build_archive, extract_archive
    from inference.backends import load_model

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="convlab-toolkit")
    hps = dict(TINY_CNN, sagemaker_program="train.py",
               sagemaker_submit_directory=upload_source_dir(s3, tmp_path, "convlab-toolkit"))
    base = sagemaker_tree(tmp_path / "opt" / "ml", fashion_subset_dir, sdk_encoded(hps))
    result = subprocess.run([sys.executable, "-m", "sagemaker_training.cli.train"], cwd=tmp_path,
                            env=clean_env(SAGEMAKER_BASE_DIR=str(base), **TF_CONTAINER_ENV),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    model_dir = base / "model"
    assert not (model_dir / "model.onnx").exists()
    assert json.loads((model_dir / "input.json").read_text())["photo_mapping"] == "object"
    archive = build_archive(model_dir, tmp_path / "model.tar.gz")
    with tarfile.open(archive) as tar:
        assert "model.onnx" in tar.getnames()
    served = load_model(extract_archive(archive, tmp_path / "served"), backend="onnx")
    images, labels = fashion_test_images
    accuracy = float(np.mean(served.predict(images[:200].astype(np.float32) / 255).argmax(axis=1) == labels[:200]))
    expected = json.loads((model_dir / "metrics.json").read_text())["test_accuracy"]
    assert served.info["backend"] == "onnx" and abs(accuracy - expected) < 0.1, (accuracy, expected)
