"""convlab's image run as SageMaker runs it: `train` and `serve` in real containers, driven by the
README's scripts, ModelTrainer LOCAL_CONTAINER on one and two instances, a spot-style kill and
resume, and the serve-only image. Containers use host networking (or 127.0.0.1 only): no test
traffic leaves this machine. Skips, with one line, where no Docker engine can be had."""
from __future__ import annotations

import base64
import io
import json
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inference.local import invoke, request
from tests.fixtures_data import png_bytes
from tests.fixtures_docker import REPO, ServedContainer, cli_env, image_size_mb, run

pytestmark = pytest.mark.container

TINY_CNN = {"model": "cnn", "depth": "2", "filters": "16", "dense": "64", "epochs": "1", "batch_size": "64",
            "seed": "5", "verbose": "2"}
N_IMAGES = 300


def opt_ml_tree(root: Path, data: Path, **hyperparameters) -> Path:
    """`convlab opt-ml ROOT --train DATA --hp ...`, the README's way to lay out /opt/ml."""
    hps = {**TINY_CNN, **{k: str(v) for k, v in hyperparameters.items()}}
    args = ["python", "-m", "convlab", "opt-ml", str(root), "--train", str(data)]
    for name, value in hps.items():
        args += ["--hp", f"{name}={value}"]
    result = run(args, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "/opt/ml laid out" in result.stdout
    return root


def docker_train(opt_ml: Path, image: str, name: str | None = None, timeout: float = 600):
    env = cli_env()
    if name:
        env["NAME"] = name
    return run(["bash", str(REPO / "scripts" / "docker_train.sh"), str(opt_ml), image], timeout=timeout, env=env)


@pytest.fixture(scope="module")
def container_model(convlab_image, fashion_subset_dir, tmp_path_factory) -> Path:
    """A model_dir trained inside the container by `train`, as SageMaker runs it."""
    root = opt_ml_tree(tmp_path_factory.mktemp("container") / "opt_ml", fashion_subset_dir)
    started = time.perf_counter()
    result = docker_train(root, convlab_image)
    print(f"\ncontainer train: {time.perf_counter() - started:.1f} s")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "convlab-metrics final=test" in result.stdout
    return root / "model"


def test_train_in_the_container_writes_the_model_dir(container_model):
    for name in ("1/saved_model.pb", "1/variables", "model.onnx", "model.keras", "labels.json", "config.json",
                 "metrics.json", "model_summary.json"):
        assert (container_model / name).exists(), name
    metrics = json.loads((container_model / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 1 and metrics["num_train"] == 5400
    assert metrics["data_source"]["train"].startswith("/opt/ml/input/data/train")
    assert not (container_model.parent / "output" / "failure").exists()


def test_a_bad_channel_fails_the_container_with_a_failure_file(convlab_image, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train-images-idx3-ubyte.gz").write_bytes(b"\x00not gzip" * 50)
    (bad / "train-labels-idx1-ubyte.gz").write_bytes(b"\x00not gzip" * 5)
    root = opt_ml_tree(tmp_path / "opt_ml", bad)
    result = docker_train(root, convlab_image, timeout=300)
    assert result.returncode != 0
    failure = (root / "output" / "failure").read_text()
    assert "train-images-idx3-ubyte.gz" in failure and "gzip" in failure
    assert result.stderr.strip().splitlines()[-1].startswith("docker_train.sh: training failed: DataError:")
    assert not (root / "model" / "metrics.json").exists()


def encodings(image: np.ndarray) -> dict[str, tuple[bytes, str]]:
    """One image in every content type the handler accepts."""
    png = png_bytes(image)
    jpeg = io.BytesIO()
    Image.fromarray(image[..., 0]).save(jpeg, format="JPEG", quality=95)
    npy = io.BytesIO()
    np.save(npy, image[None])
    return {
        "image/png": (png, "image/png"),
        "image/jpeg": (jpeg.getvalue(), "image/jpeg"),
        "application/x-image": (png, "application/x-image"),
        "application/json": (json.dumps({"instances": [image[..., 0].tolist()]}).encode(), "application/json"),
        "application/json (base64)": (json.dumps({"image": base64.b64encode(png).decode()}).encode(),
                                      "application/json"),
        "application/x-npy": (npy.getvalue(), "application/x-npy"),
        "text/csv": (",".join(str(int(v)) for v in image.ravel()).encode() + b"\n", "text/csv"),
    }


def test_serve_in_the_container_classifies_real_images_in_every_content_type(
        container_model, convlab_image, fashion_test_images, tmp_path):
    images, labels = fashion_test_images
    images, labels = images[:N_IMAGES], labels[:N_IMAGES]
    expected = json.loads((container_model / "metrics.json").read_text())["test_accuracy"]
    with ServedContainer(container_model, convlab_image, tmp_path / "serve.log") as served:
        assert json.loads(request(served.port, "GET", "/execution-parameters")[2])["MaxPayloadInMB"] == 6
        accuracy = {}
        for kind in encodings(images[0]):
            correct = 0
            for image, label in zip(images, labels):
                body, content_type = encodings(image)[kind]
                status, media, payload = invoke(served.port, body, content_type)
                assert status == 200 and media.startswith("application/json"), (kind, payload[:300])
                correct += json.loads(payload)["predictions"][0]["class_index"] == int(label)
            accuracy[kind] = correct / len(labels)
        print(f"\naccuracy by content type ({len(labels)} images): {accuracy}; metrics.json {expected:.3f}")
        # 300 images: the standard error of an accuracy near 0.8 is ~0.023; allow 3 of them.
        for kind, value in accuracy.items():
            assert abs(value - expected) <= 0.07, (kind, value, expected)
        # Bad input: a JSON 4xx, and the server stays up.
        good = png_bytes(images[0])
        for body, content_type, accept, status in [
            (good, "text/plain", None, 415), (good[:40], "image/png", None, 400), (b"{", "application/json", None, 400),
            (b"", "image/png", None, 400), (good, "image/png", "image/webp", 406),
            (bytes(7 * 1024 * 1024), "application/x-npy", None, 413),
        ]:
            got, media, payload = invoke(served.port, body, content_type, accept)
            assert (got, media) == (status, "application/json"), (status, payload[:200])
            assert json.loads(payload)["status"] == status
        assert request(served.port, "GET", "/ping")[0] == 200
        # scripts/predict.sh, as the README shows it.
        image_file = tmp_path / "shirt.png"
        image_file.write_bytes(good)
        env = cli_env()
        env["URL"] = f"http://127.0.0.1:{served.port}"
        result = run(["bash", str(REPO / "scripts" / "predict.sh"), str(image_file)], env=env, timeout=60)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout.split(": ", 1)[1])["predictions"][0]["label"]
    assert served.process.returncode == 0


def test_docker_stop_with_requests_in_flight_loses_none(container_model, convlab_image, fashion_test_images,
                                                        tmp_path):
    """16 clients each send a 3,000-image request; once every body is on the wire, `docker stop`.
    Every one of them is answered in full, and afterwards the port is closed."""
    import http.client

    batch = np.resize(fashion_test_images[0], (3000, 28, 28, 1))
    buffer = io.BytesIO()
    np.save(buffer, batch)
    body = buffer.getvalue()
    sent = threading.Barrier(17)
    answers: dict[int, tuple] = {}

    with ServedContainer(container_model, convlab_image, tmp_path / "serve.log") as served:
        def client(index: int) -> None:
            connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=120)
            try:
                connection.request("POST", "/invocations", body=body, headers={"Content-Type": "application/x-npy"})
                sent.wait(timeout=60)
                response = connection.getresponse()
                payload = response.read()
                answers[index] = (response.status, len(json.loads(payload)["predictions"]), time.perf_counter())
            except OSError as exc:
                answers[index] = (f"lost: {type(exc).__name__}", 0, time.perf_counter())
            finally:
                connection.close()

        threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
        for thread in threads:
            thread.start()
        sent.wait(timeout=60)
        stop_started = time.perf_counter()
        code = served.stop()
        stop_seconds = time.perf_counter() - stop_started
        for thread in threads:
            thread.join(timeout=120)
        try:
            request(served.port, "GET", "/ping", timeout=5)
            still_open = True
        except OSError:
            still_open = False
    statuses = [answers[i][:2] for i in range(16)]
    after_stop = sum(answers[i][2] > stop_started for i in range(16))
    print(f"\ndocker stop: {statuses.count((200, 3000))}/16 answered in full, {after_stop} of them after "
          f"the stop began; stop took {stop_seconds:.1f} s")
    assert statuses == [(200, 3000)] * 16, statuses
    assert after_stop >= 1  # they really were in flight when SIGTERM arrived
    assert code == 0 and not still_open


def test_a_killed_training_container_resumes_after_the_last_completed_epoch(convlab_image, fashion_subset_dir,
                                                                           tmp_path):
    """Managed spot training: the instance goes away mid-run; the restarted job, given the same
    checkpoint directory, goes on after the last completed epoch."""
    root = opt_ml_tree(tmp_path / "opt_ml", fashion_subset_dir, epochs=4)
    name = f"convlab-spot-{time.time_ns() % 10**8}"
    env = cli_env()
    env["NAME"] = name
    process = subprocess.Popen(["bash", str(REPO / "scripts" / "docker_train.sh"), str(root), convlab_image],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=REPO)
    deadline = time.monotonic() + 300
    while not (root / "checkpoints" / "ckpt-1").is_dir():  # renamed into place once complete
        assert process.poll() is None and time.monotonic() < deadline, "no checkpoint of epoch 1 appeared"
        time.sleep(0.01)
    subprocess.run(["docker", "kill", name], capture_output=True, timeout=60)  # SIGKILL: the spot instance is gone
    assert process.wait(timeout=120) != 0
    assert not (root / "model" / "metrics.json").exists()
    done = max(int(p.name.split("-")[1]) for p in (root / "checkpoints").glob("ckpt-*") if p.name[5:].isdigit())
    assert 1 <= done < 4

    result = docker_train(root, convlab_image)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    epochs = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("convlab-metrics epoch=")]
    assert epochs == [f"epoch={k}" for k in range(done + 1, 5)], (done, result.stdout[-2000:])
    metrics = json.loads((root / "model" / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 4 and len(metrics["history"]["val_accuracy"]) == 4


# -- SDK v3 ModelTrainer LOCAL_CONTAINER with convlab's image ----------------------------------------
def printed_json(stdout: str) -> dict:
    """The JSON document `convlab launch` prints last (docker-compose's log lines come before it)."""
    start = 0 if stdout.startswith("{") else stdout.rindex("\n{\n") + 1
    return json.loads(stdout[start:])


def launch_local_container(data: Path, work: Path, *extra: str) -> tuple[subprocess.CompletedProcess, float]:
    args = ["python", "-m", "convlab", "launch", "--local-container", "--data", str(data), "--work-dir",
            str(work), "--epochs", "2", "--model", "cnn", "--depth", "2", "--filters", "16", "--dense", "64",
            "--seed", "5", "--batch_size", "64", *extra]
    started = time.perf_counter()
    result = run(args, timeout=900, cwd=work.parent)
    seconds = time.perf_counter() - started
    left = run(["docker", "ps", "-aq", "--filter", "label=com.docker.compose.project=container"], timeout=60)
    assert left.stdout.strip() == "", "LOCAL_CONTAINER left containers behind"
    return result, seconds


@pytest.fixture(scope="module")
def channels_dir(fashion_subset_dir, tmp_path_factory) -> Path:
    """train/ and test/ channels, as `convlab launch --data DIR` uploads them."""
    root = tmp_path_factory.mktemp("channels")
    for channel, prefix in (("train", "train-"), ("test", "t10k-")):
        (root / channel).mkdir()
        for path in fashion_subset_dir.glob(f"{prefix}*"):
            (root / channel / path.name).write_bytes(path.read_bytes())
    return root


@pytest.fixture(scope="module")
def one_instance(convlab_image, channels_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("launch1") / "work"
    result, seconds = launch_local_container(channels_dir, work)
    print(f"\nLOCAL_CONTAINER, 1 instance: {seconds:.1f} s")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return printed_json(result.stdout), seconds


def test_model_trainer_local_container_trains_and_convlab_serves_its_model(
        one_instance, convlab_image, fashion_test_images, tmp_path):
    from deploy.package import extract_archive

    outcome, _ = one_instance
    assert outcome["mode"] == "local_container" and outcome["status"] == "Completed"
    archive = Path(outcome["model_uri"].removeprefix("file://"))
    model_dir = extract_archive(archive, tmp_path / "model")
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics == outcome["metrics"] and metrics["epochs_completed"] == 2
    images, labels = fashion_test_images
    with ServedContainer(model_dir, convlab_image, tmp_path / "serve.log") as served:
        correct = 0
        for image, label in zip(images[:N_IMAGES], labels[:N_IMAGES]):
            status, _, payload = invoke(served.port, png_bytes(image), "image/png")
            assert status == 200, payload[:300]
            correct += json.loads(payload)["predictions"][0]["class_index"] == int(label)
    accuracy = correct / N_IMAGES
    print(f"\nserved LOCAL_CONTAINER model: accuracy {accuracy:.3f}, metrics.json {metrics['test_accuracy']:.3f}")
    assert abs(accuracy - metrics["test_accuracy"]) <= 0.07


def test_model_trainer_local_container_on_two_instances_trains_one_model(
        one_instance, convlab_image, channels_dir, tmp_path):
    work = tmp_path / "work"
    result, seconds = launch_local_container(channels_dir, work, "--instance-count", "2")
    single, single_seconds = one_instance
    print(f"\nLOCAL_CONTAINER, 2 instances: {seconds:.1f} s (1 instance: {single_seconds:.1f} s)")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    outcome = printed_json(result.stdout)
    logs = result.stderr + result.stdout
    assert "algo-2" in logs
    # The worker stays until the chief has written the model (docker-compose stops all at the first exit).
    assert logs.count("all 2 workers finished") == 2, logs[-3000:]
    assert outcome["metrics"], outcome.get("metrics_note")
    two = outcome["metrics"]["test_accuracy"]
    one = single["metrics"]["test_accuracy"]
    print(f"test accuracy: 2 instances {two:.3f}, 1 instance {one:.3f}")
    assert outcome["metrics"]["epochs_completed"] == 2
    assert abs(two - one) <= 0.06, (two, one)


def test_corrupt_data_is_refused_before_any_container_runs(convlab_image, tmp_path):
    data = tmp_path / "data" / "train"
    data.mkdir(parents=True)
    (data / "train-images-idx3-ubyte.gz").write_bytes(b"\x00not gzip" * 50)
    (data / "train-labels-idx1-ubyte.gz").write_bytes(b"\x00not gzip" * 5)
    result, _ = launch_local_container(data.parent, tmp_path / "work")
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "train-images-idx3-ubyte.gz" in last and "gzip" in last and "algo-1" not in last, last
    assert "Traceback" not in result.stderr


def test_a_failing_container_ends_launch_with_one_line(convlab_image, channels_dir, tmp_path):
    # Data the launch accepts, with class names only the entry point in the container checks.
    result, _ = launch_local_container(channels_dir, tmp_path / "work", "--class_names", "a,b")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("convlab launch: algo-1 failed: DataError: ") and "class_names" in last, last
    assert "Traceback" not in result.stderr


# -- the serve-only image ------------------------------------------------------------------------
def test_the_serve_only_image_holds_no_tensorflow_and_answers_like_the_full_image(
        serve_image, convlab_image, container_model, fashion_test_images, tmp_path):
    size = image_size_mb(serve_image)
    print(f"\nimage sizes: {serve_image} {size:.0f} MB, {convlab_image} {image_size_mb(convlab_image):.0f} MB")
    assert size <= 400
    probe = run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "python3", serve_image, "-c",
                 "import importlib.util as u; print(u.find_spec('tensorflow') is None, "
                 "u.find_spec('matplotlib') is None)"], timeout=120)
    assert probe.stdout.split() == ["True", "True"], probe.stdout + probe.stderr
    full = run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "python3", convlab_image, "-c",
                "import importlib.util as u; print(u.find_spec('matplotlib') is None)"], timeout=120)
    assert full.stdout.split() == ["True"], "the full image holds matplotlib: " + full.stdout + full.stderr
    images = fashion_test_images[0][:100]
    npy = io.BytesIO()
    np.save(npy, images)
    answers = {}
    for image in (serve_image, convlab_image):
        with ServedContainer(container_model, image, tmp_path / f"{image.split(':')[0]}.log") as served:
            status, _, payload = invoke(served.port, npy.getvalue(), "application/x-npy", "application/x-npy")
            assert status == 200, payload[:300]
            answers[image] = np.load(io.BytesIO(payload))
            # The try-it page and its feature maps come from whatever the server loaded.
            assert request(served.port, "GET", "/")[0] == 200
            status, _, explained = request(served.port, "POST", "/explain", png_bytes(images[0]),
                                           {"Content-Type": "image/png"})
            assert status == 200 and json.loads(explained)["blocks"], explained[:300]
    np.testing.assert_allclose(answers[serve_image], answers[convlab_image], atol=1e-5)


def test_the_serve_only_image_refuses_a_savedmodel_only_archive_clearly(serve_image, container_model, tmp_path):
    import shutil

    model_dir = tmp_path / "savedmodel-only"
    shutil.copytree(container_model, model_dir)
    (model_dir / "model.onnx").unlink()
    served = ServedContainer(model_dir, serve_image, tmp_path / "serve.log").start()
    try:
        code = served.process.wait(timeout=120)
    finally:
        served.__exit__()
    assert code != 0
    log = served.log_text()
    assert "no model.onnx, and TensorFlow is not installed" in log and "convlab:latest" in log, log[-2000:]


def test_a_build_without_network_says_what_to_do(serve_image):
    """No package index reachable: the build fails with a line that points to the offline base."""
    base = "convlab-base:bookworm" if run(["docker", "image", "inspect", "convlab-base:bookworm"],
                                          timeout=60).returncode == 0 else "python:3.11-slim"
    result = run(["docker", "build", "--no-cache", "--force-rm", "--network", "none", "--build-arg", f"BASE_IMAGE={base}",
                  "--target", "serve", "-t", "convlab-offline-check", "."], timeout=600)
    assert result.returncode != 0
    assert "needs a package index" in result.stdout + result.stderr and "scripts/docker_base.sh" in result.stderr \
        + result.stdout


# -- the study as SageMaker training jobs in local containers ----------------------------------------
def test_a_micro_study_runs_as_local_container_jobs_and_convlab_report_builds_from_their_records(
        convlab_image, fashion_subset_dir, tmp_path):
    """2 settings x 2 seeds, 1 epoch on 1,350 of 1,500 images: four LOCAL_CONTAINER jobs of convlab's image, each
    record read from the job's own model.tar.gz, then `convlab report` on the runs folder."""
    import tarfile

    from tests.fixtures_experiments import BASELINE_SPEC
    from training.experiments import study_from_dict
    from training.experiments.container_runner import LocalContainerSettings, run_local_container
    from training.experiments.records import load_records

    # Batch norm off, as in `make demo` (in so few steps its running statistics do not settle), and
    # batches of 16, so the one epoch is 85 steps.
    spec = dict(BASELINE_SPEC, base_overrides={**BASELINE_SPEC["base_overrides"], "batch_norm": "false",
                                               "batch_size": 16})
    study = study_from_dict(spec, "baseline.json")
    runs = tmp_path / "runs"
    started = time.perf_counter()
    summary = run_local_container([study], {"train": str(fashion_subset_dir)}, runs,
                                  LocalContainerSettings(training_image=convlab_image))
    seconds = time.perf_counter() - started
    print(f"\nmicro-study, 4 LOCAL_CONTAINER jobs one after another: {seconds:.1f} s")
    assert summary["planned"] == 4 and len(summary["trained"]) == 4
    records = load_records(runs)
    assert len(records) == 4
    for rid in records:  # each job's compose project is named after its folder, runs/containers/<run id>
        left = run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={rid}"], timeout=60)
        assert left.stdout.strip() == "", f"job {rid} left containers behind"
    for rid, record in records.items():
        archive = Path(record["model_artifact"].removeprefix("file://"))
        with tarfile.open(archive, "r:gz") as tar:
            inside = json.load(tar.extractfile("metrics.json"))
            assert {"1/saved_model.pb", "model.keras", "labels.json"} <= set(tar.getnames())
        assert record["backend"] == "local_container" and record["test_accuracy"] == inside["test_accuracy"]
        assert inside["data_source"]["train"].startswith("/opt/ml/input/data/train"), "not trained in a container"
        assert record["epochs_completed"] == 1 and record["num_train"] == inside["num_train"] < 1500
        assert record["test_accuracy"] > 0.4, (rid, record["test_accuracy"])  # well above chance (0.1)
        print(f"{rid}: test accuracy {record['test_accuracy']:.3f}")
    by_model = {}
    for record in records.values():
        by_model.setdefault(record["hyperparameters"]["model"], []).append(record["test_accuracy"])
    assert sorted(by_model) == ["cnn", "mlp"] and all(len(set(v)) == 2 for v in by_model.values())

    result = run(["python", "-m", "convlab", "report", "--runs", str(runs), "--out", str(tmp_path / "reports"),
                  "--name", "micro"], timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    page = (tmp_path / "reports" / "micro" / "README.md").read_text()
    for rid in records:
        assert rid in page
    assert "MLP" in page and "CNN" in page
