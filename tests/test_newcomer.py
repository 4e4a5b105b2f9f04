"""A newcomer's first commands, run as the README shows them (`python -m convlab ...` in a child
process): each mistake is answered in one line, fast, and nothing touches AWS by surprise."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from inference.local import LocalServer, free_port

from .fixtures_data import png_bytes
from .fixtures_sdk import LAB_ROLE, TEST_BUCKET

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--model", "mlp", "--dense", "16", "--epochs", "1", "--max_train_samples", "600",
        "--max_test_samples", "200", "--export_onnx", "false", "--verbose", "0"]


def run(*argv: str, cwd: Path = ROOT, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    environ = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), environ.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=cwd, env=environ,
                          timeout=timeout)


def error_lines(done: subprocess.CompletedProcess, prefix: str) -> list[str]:
    assert "Traceback" not in done.stderr, done.stderr
    return [line for line in done.stderr.splitlines() if line.startswith(prefix)]


# --- convlab train ----------------------------------------------------------------------------------

def test_help_and_a_wrong_path_answer_before_tensorflow_loads(tmp_path):
    started = time.perf_counter()
    done = run("-m", "convlab", "train", "--help")
    assert done.returncode == 0 and "--resume" in done.stdout and "--local" in done.stdout
    missing = tmp_path / "no-such-folder"
    done = run("-m", "convlab", "train", "--local", "--train", str(missing), "--work-dir", str(tmp_path / "w"))
    elapsed = time.perf_counter() - started
    assert done.returncode == 2
    assert error_lines(done, "convlab train:") == [f"convlab train: --train {missing}: no such file or directory"]
    assert elapsed < 3.0, f"two answers took {elapsed:.1f} s: TensorFlow was imported"
    # The same check in-process: parsing and checking import neither TensorFlow nor Keras.
    probe = ("import sys; from convlab.train_cli import main; "
             f"code = main(['--train', {str(missing)!r}]); "
             "print(code, 'tensorflow' in sys.modules, 'keras' in sys.modules)")
    assert run("-c", probe).stdout.split() == ["2", "False", "False"]


def test_a_folder_without_data_is_named_as_the_user_gave_it(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no images here")
    done = run("-m", "convlab", "train", "--local", "--train", str(tmp_path / "notes"),
               "--work-dir", str(tmp_path / "w"))
    lines = error_lines(done, "convlab train:")
    assert done.returncode == 2 and len(lines) == 1
    assert lines[0].startswith(f"convlab train: --train {tmp_path / 'notes'}: ") and "readme.txt" in lines[0]
    assert "opt_ml" not in done.stderr


def test_train_without_any_channel_says_how_to_train_here(tmp_path):
    done = run("-m", "convlab", "train", "--epochs", "1", env={"CONVLAB_OPT_ML": str(tmp_path)})
    lines = error_lines(done, "convlab train:")
    assert done.returncode == 2 and len(lines) == 1
    assert f"{tmp_path / 'input' / 'data'} does not exist" in lines[0] and "--local --train" in lines[0]
    done = run("-m", "convlab", "train", "--hyperparameters", str(tmp_path / "nope.json"),
               "--train", str(tmp_path))
    assert done.returncode == 2 and error_lines(done, "convlab train:") == [
        f"convlab train: --hyperparameters {tmp_path / 'nope.json'}: cannot read it (No such file or directory)"]


def test_a_misspelt_hyperparameter_suggests_the_name(tmp_path, fashion_subset_dir):
    done = run("-m", "convlab", "train", "--train", str(fashion_subset_dir), "--work-dir", str(tmp_path),
               "--epoch", "1")
    lines = error_lines(done, "convlab train:")
    assert done.returncode == 2 and len(lines) == 1
    assert "unknown hyperparameter 'epoch'" in lines[0] and "did you mean 'epochs'?" in lines[0]


def test_train_without_local_trains_locally_and_a_rerun_starts_fresh(tmp_path, fashion_subset_dir):
    """--train without --local is local mode (never /opt/ml); running the same command twice trains
    twice, each run in its own folder; --resume continues the newest run from its checkpoint instead."""
    command = ["-m", "convlab", "train", "--train", str(fashion_subset_dir), "--work-dir", str(tmp_path),
               "--lr_schedule", "constant", *TINY]
    first = run(*command, env={"CONVLAB_OPT_ML": str(tmp_path / "not-this-one")})
    assert first.returncode == 0, first.stderr[-2000:]
    assert "training locally" in first.stderr and not (tmp_path / "not-this-one").exists()
    first_run = (tmp_path / "latest").resolve()
    assert json.loads((first_run / "model" / "metrics.json").read_text())["epochs_completed"] == 1
    assert (first_run / "checkpoints" / "ckpt-1" / "state.json").is_file()

    again = run(*command)
    assert again.returncode == 0, again.stderr[-2000:]
    second_run = (tmp_path / "latest").resolve()
    assert second_run != first_run and "(--resume continues the newest run)" in again.stderr
    assert "convlab-metrics epoch=1" in again.stdout  # the epoch was trained again, not skipped

    resumed = run(*command[:-len(TINY)], *TINY[:4], "--epochs", "2", *TINY[6:], "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"--resume: continuing run {second_run} from its checkpoint" in resumed.stderr
    assert "convlab-metrics epoch=2" in resumed.stdout and "convlab-metrics epoch=1 " not in resumed.stdout
    assert (tmp_path / "latest").resolve() == second_run
    assert json.loads((second_run / "model" / "metrics.json").read_text())["epochs_completed"] == 2


def test_training_help_shows_types_defaults_and_allowed_values():
    done = run("-m", "training.train", "--help")
    assert done.returncode == 0
    rows = {line.split()[0]: line for line in done.stdout.splitlines() if line.startswith("  ")}
    assert "input_shape" not in rows and "num_classes" not in rows
    assert rows["epochs"].split()[1:4] == ["int", "default", "5"]
    assert "one of adam, adamw, sgd" in rows["optimizer"] and "default adam" in rows["optimizer"]
    assert "one of mlp, cnn" in rows["model"] and "class_names" in rows


# --- convlab serve and predict.sh -------------------------------------------------------------------

def test_serve_defaults_to_this_machine_and_says_so():
    done = run("-m", "convlab", "serve", "--help")
    assert done.returncode == 0 and done.stdout.startswith("usage: convlab serve")
    assert "default: 127.0.0.1" in " ".join(done.stdout.split())
    done = run("-m", "inference.server", "--help")   # the container's `serve` keeps 0.0.0.0
    assert done.returncode == 0 and "default: 0.0.0.0" in " ".join(done.stdout.split())


def test_serve_on_a_folder_that_is_not_a_model_dir_is_one_line(tmp_path):
    (tmp_path / "opt_ml" / "model").mkdir(parents=True)
    (tmp_path / "opt_ml" / "model" / "labels.json").write_text('["a", "b"]')
    done = run("-m", "convlab", "serve", "--model-dir", str(tmp_path / "opt_ml"), "--port", str(free_port()),
               timeout=60)
    lines = error_lines(done, "convlab serve:")
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert str(tmp_path / "opt_ml") in lines[0] and "labels.json" in lines[0] and "saved_model.pb" in lines[0]
    assert f"did you mean {tmp_path / 'opt_ml' / 'model'}?" in lines[0]
    assert "running" not in done.stderr.lower() and "serving" not in done.stderr


def test_predict_sh_exits_non_zero_on_a_refusal_and_on_a_missing_file(trained_model_dir, fashion_test_images,
                                                                      tmp_path):
    good = tmp_path / "shoe.png"
    good.write_bytes(png_bytes(fashion_test_images[0][0]))
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\nnot an image")
    port = free_port()
    command = [sys.executable, "-m", "convlab", "serve", "--model-dir", str(trained_model_dir), "--port", str(port)]
    with LocalServer(trained_model_dir, port=port, command=command, log_path=tmp_path / "serve.log") as server:
        env = {**os.environ, "URL": f"http://127.0.0.1:{server.port}"}

        def predict(*files: Path) -> subprocess.CompletedProcess:
            return subprocess.run(["bash", str(ROOT / "scripts" / "predict.sh"), *map(str, files)],
                                  capture_output=True, text=True, env=env, timeout=60)

        done = predict(good)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout.split(": ", 1)[1])["predictions"][0]["label"]
        done = predict(corrupt)
        assert done.returncode == 1 and f"predict.sh: {corrupt}: the server answered 400" in done.stderr
        done = predict(tmp_path / "missing.png", good)
        assert done.returncode == 1
        assert f"predict.sh: {tmp_path / 'missing.png'}: not a readable file" in done.stderr
        assert done.stdout.startswith(f"{good}: ")  # the other files are still sent
    assert "Uvicorn running on http://127.0.0.1:" in server.log_text()


# --- sandbox, studies, deploy help --------------------------------------------------------------------

def test_a_misspelt_sandbox_operation_suggests_the_name_before_listening():
    done = run("-m", "deploy.sandbox", "--deny", "CreateEndpointConfg", timeout=60)
    lines = error_lines(done, "python -m deploy.sandbox:")
    assert done.returncode == 2 and len(lines) == 1
    assert "'CreateEndpointConfg'" in lines[0] and "did you mean CreateEndpointConfig?" in lines[0]
    assert "listening" not in done.stderr + done.stdout


def test_study_set_mistake_names_set_and_usage_names_convlab_study(tmp_path):
    done = run("-m", "convlab", "study", "kernel_size", "--set", "epoch=1", "--runs", str(tmp_path))
    lines = error_lines(done, "convlab study:")
    assert done.returncode == 2 and len(lines) == 1
    assert lines[0].startswith("convlab study: --set epoch=1: unknown hyperparameter 'epoch'")
    assert "did you mean 'epochs'?" in lines[0] and "kernel_size.json" not in lines[0]
    assert not (tmp_path / "records").exists()
    assert run("-m", "convlab", "study", "--help").stdout.startswith("usage: convlab study")
    assert run("-m", "convlab", "report", "--help").stdout.startswith("usage: convlab report")


def test_deploy_subcommands_describe_themselves():
    for command, words in (("package", "model.tar.gz"), ("deploy", "batch transform"), ("cleanup", "result JSON")):
        done = run("-m", "convlab", "deploy", command, "--help")
        text = " ".join(done.stdout.split())
        assert done.returncode == 0 and words in text.split("options:")[0], text


# --- convlab launch --dry-run ---------------------------------------------------------------------------

def test_launch_dry_run_writes_nothing_to_aws(aws, fashion_subset_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")
    s3 = boto3.client("s3")
    before = s3.list_buckets().get("Buckets", [])
    done = run("-m", "convlab", "launch", "--dry-run", "--role", LAB_ROLE, "--bucket", TEST_BUCKET,
               "--data", str(fashion_subset_dir), "--work-dir", str(tmp_path), "--model", "cnn", "--epochs", "1",
               env=aws.environ() | {"AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
                                    "SAGEMAKER_VALIDATE_ROLE": "false"}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    plan = json.loads(done.stdout)
    prefix = plan["upload"]["prefix"]
    assert re.fullmatch(rf"convlab/data/{fashion_subset_dir.name}-[0-9a-f]{{12}}", prefix), prefix
    assert plan["dry_run"] is True and plan["channels"]["train"] == f"s3://{TEST_BUCKET}/{prefix}/train/"
    train, test = plan["upload"]["channels"]["train"], plan["upload"]["channels"]["test"]
    assert (train["files"], train["would_upload"], train["unchanged"], test["files"]) == (2, 2, 0, 2)
    assert plan["upload"]["upload_bytes"] == sum(p.stat().st_size for p in fashion_subset_dir.iterdir())
    assert s3.list_buckets().get("Buckets", []) == before == []
    assert boto3.client("sagemaker").list_training_jobs()["TrainingJobSummaries"] == []
    assert "nothing was created or uploaded" in done.stderr


# --- class names ------------------------------------------------------------------------------------------

def _digits_named_subset(fashion_mnist, dest: Path, count: int = 600) -> Path:
    from training.data import write_idx

    train, test = fashion_mnist
    write_idx(dest, train.images[:count], train.labels[:count], prefix="train")
    write_idx(dest, test.images[:200], test.labels[:200], prefix="t10k")
    return dest


def test_fashion_mnist_copied_anywhere_keeps_its_names(fashion_mnist_dir, tmp_path, caplog):
    from training.data import FASHION_MNIST_CLASSES, load_channels

    copy = tmp_path / "data"
    copy.mkdir()
    for source in fashion_mnist_dir.iterdir():
        (copy / source.name).symlink_to(source)
    caplog.set_level("INFO", logger="training.data")
    train, test = load_channels({"train": str(copy)})
    assert train.classes == test.classes == FASHION_MNIST_CLASSES
    assert "labels are the published Fashion-MNIST set's" in caplog.text


def test_a_channel_or_a_hyperparameter_names_the_classes(fashion_mnist, tmp_path, caplog):
    from training.data import DataError, load_channels

    data = _digits_named_subset(fashion_mnist, tmp_path / "data")
    caplog.set_level("INFO", logger="training.data")
    train, _ = load_channels({"train": str(data)})
    assert train.classes == [str(i) for i in range(10)]  # a subset in a plain folder: nothing to go on
    assert "the class_names hyperparameter names them" in caplog.text

    names = [f"class {i}" for i in range(10)]
    (data / "classes.txt").write_text("\n".join(names) + "\n")
    caplog.clear()
    train, test = load_channels({"train": str(data)})
    assert train.classes == test.classes == names and f"from {data / 'classes.txt'}" in caplog.text

    given = ",".join(f"c{i}" for i in range(10))
    train, test = load_channels({"train": str(data)}, class_names=given)
    assert train.classes == test.classes == given.split(",")
    refused = r"hyperparameter 'class_names': 3 names \(a, b, c\) for the 10 classes of .*expected 10 names"
    with pytest.raises(DataError, match=refused):
        load_channels({"train": str(data)}, class_names="a,b,c")


def test_labels_json_beside_the_data_names_the_trained_model(fashion_mnist, tmp_path):
    data = _digits_named_subset(fashion_mnist, tmp_path / "data")
    names = ["top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]
    (data / "labels.json").write_text(json.dumps(names))
    done = run("-m", "convlab", "train", "--local", "--train", str(data), "--work-dir", str(tmp_path / "w"), *TINY)
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"class names of \S+ from \S+/labels\.json", done.stderr), done.stderr[-2000:]
    model_dir = tmp_path / "w" / "latest" / "model"
    assert json.loads((model_dir / "metrics.json").read_text())["classes"] == names
    assert json.loads((model_dir / "labels.json").read_text()) == names
