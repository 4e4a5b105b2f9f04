"""Two real training processes on 127.0.0.1 train one model with MultiWorkerMirroredStrategy, as
two SageMaker hosts (algo-1, algo-2) do; only the chief writes the model."""
from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import sys
import time

from tests.test_docker import program_env

log = logging.getLogger(__name__)

HOSTS = ["algo-1", "algo-2"]
HYPERPARAMETERS = {"model": "cnn", "depth": "1", "filters": "8", "dense": "32", "epochs": "2",
                   "batch_size": "64", "max_train_samples": "2000", "max_test_samples": "500", "seed": "3",
                   "verbose": "0"}


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def host_root(base, host: str, channel) -> object:
    """/opt/ml of one host of a two-host training job."""
    root = base / host
    (root / "input" / "config").mkdir(parents=True)
    shutil.copytree(channel, root / "input" / "data" / "train")
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(HYPERPARAMETERS))
    (root / "input" / "config" / "resourceconfig.json").write_text(
        json.dumps({"current_host": host, "hosts": HOSTS}))
    return root


def test_two_workers_train_one_model_and_only_the_chief_writes_it(fashion_subset_dir, tmp_path):
    ports = free_ports(len(HOSTS))
    workers = [f"127.0.0.1:{port}" for port in ports]
    processes, roots = [], []
    started = time.perf_counter()
    for index, host in enumerate(HOSTS):
        root = host_root(tmp_path, host, fashion_subset_dir)
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = program_env(root, TF_CONFIG=json.dumps(tf_config), SM_HOSTS=json.dumps(HOSTS), SM_CURRENT_HOST=host)
        processes.append(subprocess.Popen([sys.executable, "-m", "training.train"], env=env, text=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        roots.append(root)
    outputs, seconds = [], []
    for process in processes:
        outputs.append(process.communicate(timeout=240))
        seconds.append(time.perf_counter() - started)
    log.info("two workers finished after %.1f s (chief) and %.1f s (worker)", *seconds)
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-3000:]

    chief, worker = roots
    for name in ("1/saved_model.pb", "model.onnx", "labels.json", "config.json", "metrics.json"):
        assert (chief / "model" / name).is_file(), name
    assert not (worker / "model").exists() or not any((worker / "model").iterdir()), "the worker wrote a model"
    assert not (worker / "checkpoints").exists() or not any((worker / "checkpoints").iterdir())
    assert "not the chief" in outputs[1][1]
    metrics = json.loads((chief / "model" / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 2 and len(metrics["history"]["val_accuracy"]) == 2
    assert "convlab-metrics epoch=2 loss=" in outputs[0][0] and "convlab-metrics final=test" in outputs[0][0]
    assert (chief / "checkpoints" / "ckpt-2" / "state.json").is_file()

    # The same job on one process: the same data, order and global batch, so nearly the same accuracy.
    single = host_root(tmp_path / "single", "algo-1", fashion_subset_dir)
    (single / "input" / "config" / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    (single / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps(dict(HYPERPARAMETERS, export_onnx="false")))
    begin = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "training.train"], env=program_env(single), capture_output=True,
                            text=True, timeout=240)
    log.info("one process finished after %.1f s", time.perf_counter() - begin)
    assert result.returncode == 0, result.stderr[-3000:]
    reference = json.loads((single / "model" / "metrics.json").read_text())
    log.info("test accuracy: two workers %.4f, one process %.4f", metrics["test_accuracy"],
             reference["test_accuracy"])
    assert metrics["test_accuracy"] > 0.6, "far from well above chance (0.1)"
    assert abs(metrics["test_accuracy"] - reference["test_accuracy"]) < 0.05
    assert metrics["num_train"] == reference["num_train"] and metrics["params"] == reference["params"]
