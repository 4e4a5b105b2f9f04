"""Two real training processes on 127.0.0.1 train one model with MultiWorkerMirroredStrategy, as
two SageMaker hosts (algo-1, algo-2) do; only the chief writes the model and the checkpoints."""
from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from inference.local import free_ports
from tests.test_docker import program_env

log = logging.getLogger(__name__)

HOSTS = ["algo-1", "algo-2"]
HYPERPARAMETERS = {"model": "cnn", "depth": "1", "filters": "8", "dense": "32", "epochs": "2",
                   "batch_size": "64", "max_train_samples": "2000", "max_test_samples": "500", "seed": "3",
                   "verbose": "0"}


def host_root(base, host: str, channel, hosts=HOSTS, **hyperparameters):
    """/opt/ml of one host of a training job."""
    root = base / host
    (root / "input" / "config").mkdir(parents=True, exist_ok=True)
    if not (root / "input" / "data" / "train").exists():
        shutil.copytree(channel, root / "input" / "data" / "train")
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(dict(HYPERPARAMETERS,
                                                                                    **hyperparameters)))
    (root / "input" / "config" / "resourceconfig.json").write_text(json.dumps({"current_host": host, "hosts": hosts}))
    return root


def run_job(base, channel, timeout: float = 240, **hyperparameters):
    """Run both hosts as processes on free 127.0.0.1 ports; [(root, returncode, stdout, stderr)]. A host
    still running after `timeout` seconds is killed and reported with returncode None."""
    workers = [f"127.0.0.1:{port}" for port in free_ports(len(HOSTS))]
    started, runs = time.perf_counter(), []
    for index, host in enumerate(HOSTS):
        root = host_root(base, host, channel, **hyperparameters)
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = program_env(root, TF_CONFIG=json.dumps(tf_config), SM_HOSTS=json.dumps(HOSTS), SM_CURRENT_HOST=host)
        runs.append((root, subprocess.Popen([sys.executable, "-m", "training.train"], env=env, text=True,
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)))
    results = []
    deadline = time.monotonic() + timeout
    for root, process in runs:
        try:
            stdout, stderr = process.communicate(timeout=max(deadline - time.monotonic(), 1))
            code = process.returncode
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
            code = None
        results.append((root, code, stdout, stderr))
        log.info("%s finished with code %s after %.1f s", root.name, code,
                 time.perf_counter() - started)
    return results


@pytest.fixture(scope="module")
def two_worker_job(fashion_subset_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("two-hosts")
    return base, run_job(base, fashion_subset_dir)


def test_two_workers_train_one_model_and_only_the_chief_writes_it(two_worker_job, fashion_subset_dir, tmp_path):
    _, results = two_worker_job
    for _, code, _, stderr in results:
        assert code == 0, stderr[-3000:]
    (chief, _, chief_out, _), (worker, _, _, worker_err) = results
    for name in ("1/saved_model.pb", "model.onnx", "labels.json", "config.json", "metrics.json"):
        assert (chief / "model" / name).is_file(), name
    assert not (worker / "model").exists() or not any((worker / "model").iterdir()), "the worker wrote a model"
    assert not (worker / "checkpoints").exists() or not any((worker / "checkpoints").iterdir())
    assert "not the chief" in worker_err
    metrics = json.loads((chief / "model" / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 2 and len(metrics["history"]["val_accuracy"]) == 2
    assert "convlab-metrics epoch=2 loss=" in chief_out and "convlab-metrics final=test" in chief_out
    assert (chief / "checkpoints" / "ckpt-2" / "state.json").is_file()

    # The same job on one process: the same data, order and global batch, so nearly the same accuracy.
    single = host_root(tmp_path, "algo-1", fashion_subset_dir, hosts=["algo-1"], export_onnx="false")
    begin = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "training.train"], env=program_env(single), capture_output=True,
                            text=True, timeout=240)
    log.info("one process finished after %.1f s", time.perf_counter() - begin)
    assert result.returncode == 0, result.stderr[-3000:]
    reference = json.loads((single / "model" / "metrics.json").read_text())
    log.info("test accuracy: two workers %.4f, one process %.4f", metrics["test_accuracy"],
             reference["test_accuracy"])
    assert metrics["test_accuracy"] > 0.6, "not well above chance (0.1)"
    assert abs(metrics["test_accuracy"] - reference["test_accuracy"]) < 0.05
    assert metrics["num_train"] == reference["num_train"] and metrics["params"] == reference["params"]


def test_two_workers_resume_from_the_chiefs_checkpoint(two_worker_job, fashion_subset_dir):
    base, first = two_worker_job
    before = json.loads((first[0][0] / "model" / "metrics.json").read_text())
    # A restarted job with one more epoch; only the chief has checkpoints, the worker follows it.
    results = run_job(base, fashion_subset_dir, epochs="3")
    for _, code, _, stderr in results:
        assert code == 0, stderr[-3000:]
    (chief, _, chief_out, chief_err), (_, _, _, worker_err) = results
    assert "after epoch 2" in chief_err and "resuming with the chief after epoch 2" in worker_err
    assert "convlab-metrics epoch=3 " in chief_out and "convlab-metrics epoch=2 " not in chief_out
    metrics = json.loads((chief / "model" / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 3 and metrics["history"]["loss"][:2] == before["history"]["loss"]
    assert metrics["history"]["loss"][2] < metrics["history"]["loss"][1]
    assert metrics["test_accuracy"] > 0.6


def test_a_chief_that_cannot_resume_fails_every_worker_with_its_reason(two_worker_job, fashion_subset_dir):
    """The chief's checkpoint was written with other hyperparameters: the chief refuses it in load(),
    and the worker, waiting for the chief's model, fails with the chief's reason instead of waiting."""
    base, _ = two_worker_job
    results = run_job(base, fashion_subset_dir, timeout=150, filters="16")
    (chief, chief_code, _, chief_err), (worker, worker_code, _, worker_err) = results
    assert chief_code == 1 and worker_code == 1, (chief_code, worker_code, worker_err[-2000:])
    reason = (chief / "output" / "failure").read_text()
    assert "ConfigError" in reason and "filters" in reason
    failure = (worker / "output" / "failure").read_text()
    assert failure.startswith("ChiefFailed: the chief (worker 0) failed: ConfigError: ") and "filters" in failure
    assert "Traceback" not in failure


def test_a_chief_that_cannot_write_the_model_fails_every_worker_with_its_reason(fashion_subset_dir, tmp_path):
    chief = host_root(tmp_path, "algo-1", fashion_subset_dir)
    (chief / "model").write_text("a file where the model folder should be\n")
    results = run_job(tmp_path, fashion_subset_dir, timeout=200, epochs="1", export_onnx="false")
    (_, chief_code, chief_out, chief_err), (worker, worker_code, _, _) = results
    assert chief_code == 1 and worker_code == 1, (chief_code, worker_code, chief_err[-2000:])
    assert "convlab-metrics epoch=1 " in chief_out  # it trained, then failed while writing the model
    reason = (chief / "output" / "failure").read_text()
    assert "FileExistsError" in reason, reason[-2000:]
    failure = (worker / "output" / "failure").read_text()
    assert failure.startswith("ChiefFailed: the chief (worker 0) failed: FileExistsError: "), failure


def test_tf_config_in_the_environment_must_match_the_hosts(monkeypatch):
    from training.distributed import cluster_config

    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert cluster_config(["algo-2", "algo-1"], "algo-2")["cluster"]["worker"] == ["algo-1:2222", "algo-2:2222"]
    local = {"cluster": {"worker": ["127.0.0.1:5001", "127.0.0.1:5002"]}, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(local))
    assert cluster_config(HOSTS, "algo-2") == local
    with pytest.raises(ValueError, match=r"TF_CONFIG: worker 1 of 2 does not match host 'algo-1'"):
        cluster_config(HOSTS, "algo-1")
    with pytest.raises(ValueError, match=r"TF_CONFIG: .*does not match .*algo-3"):
        cluster_config(HOSTS + ["algo-3"], "algo-2")
    monkeypatch.setenv("TF_CONFIG", json.dumps(dict(local, cluster={"chief": ["a:1"], "worker": ["b:1"]})))
    with pytest.raises(ValueError, match="only 'worker' tasks"):
        cluster_config(HOSTS, "algo-2")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG: expected"):
        cluster_config(HOSTS, "algo-2")


def test_nothing_before_the_strategy_runs_a_tensorflow_op(opt_ml_two_hosts):
    """Collective ops must be configured before TensorFlow's runtime starts: importing the entry point,
    resolving /opt/ml and parsing the hyperparameters must not start it."""
    code = ("import json, sys\n"
            "from training import environment, train\n"
            "from training.hyperparameters import parse_hyperparameters\n"
            "env = environment.resolve([])\n"
            "parse_hyperparameters(env.hyperparameters)\n"
            "from tensorflow.python.eager import context\n"
            "print(json.dumps({'started': context.context()._context_handle is not None, 'hosts': env.hosts}))\n")
    result = subprocess.run([sys.executable, "-c", code], env=program_env(opt_ml_two_hosts), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.splitlines()[-1]) == {"started": False, "hosts": HOSTS}


@pytest.fixture
def opt_ml_two_hosts(fashion_subset_dir, tmp_path):
    return host_root(tmp_path, "algo-2", fashion_subset_dir)


# -- the start of a run on every worker: the chief's model and counters, whatever the replicas ---------
def run_probe(devices: int, hosts: list[str] | None = None, timeout: float = 180) -> list[dict]:
    """tests/multiworker_probe.py on one machine (hosts None) or as one process per host on 127.0.0.1."""
    env = program_env(None)
    if not hosts:
        result = subprocess.run([sys.executable, "-m", "tests.multiworker_probe", str(devices)], env=env,
                                capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, result.stderr[-3000:]
        return [json.loads(result.stdout.splitlines()[-1])]
    workers = [f"127.0.0.1:{port}" for port in free_ports(len(hosts))]
    processes = []
    for index, host in enumerate(hosts):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "tests.multiworker_probe", str(devices), host], text=True,
            env=dict(env, TF_CONFIG=json.dumps(tf_config), SM_HOSTS=json.dumps(hosts)),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    outputs = [process.communicate(timeout=timeout) for process in processes]
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-3000:]
    return [json.loads(stdout.splitlines()[-1]) for stdout, _ in outputs]


def test_every_worker_starts_from_the_chiefs_model_whatever_its_number_of_local_devices():
    chief_state = {"epoch": 3, "best_epoch": 2, "best_val_accuracy": 0.5}
    # Two workers, the CPU of each split into two logical devices.
    across = run_probe(2, HOSTS)
    for outcome in across:
        assert outcome["multi_worker"] is True
        assert outcome["weights"] == [0.25] and outcome["state"] == chief_state, outcome
    # One machine whose strategy has a replica on each of two devices: every copy holds the values once.
    (alone,) = run_probe(2)
    assert alone["replicas"] == 2 and alone["multi_worker"] is False
    assert alone["weights"] == [0.25] and alone["state"] == chief_state, alone


def test_the_worker_count_comes_from_the_strategys_public_cluster_resolver():
    import training.distributed as distributed

    assert "_num_workers" not in Path(distributed.__file__).read_text()
    # The default strategy has no cluster resolver: one worker.
    import tensorflow as tf

    assert distributed.worker_count(tf.distribute.get_strategy()) == 1


def test_the_distributed_step_scales_the_loss_under_mixed_float16_as_keras_does(fashion_test_images):
    """One step of the loop used across workers and one step of Keras' own train_on_batch, from the
    same weights on the same 64 real images, under mixed_float16: the same update. (Keras' optimizer
    divides the gradients by its loss scale, so a step that never multiplied the loss by it moves the
    weights 32,768 times too little.)"""
    import keras
    import numpy as np
    import tensorflow as tf

    from training.distributed import fit_distributed
    from training.precision import precision_policy

    images, labels = fashion_test_images
    x, y = images[:64].astype("float32") / 255.0, labels[:64].astype("int32")

    def build():
        model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                                  keras.layers.Flatten(), keras.layers.Dense(10, dtype="float32")])
        model.compile(optimizer=keras.optimizers.SGD(0.05),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    with precision_policy("mixed_float16"):
        keras.utils.set_random_seed(1)
        ours, theirs = build(), build()
        theirs.set_weights(ours.get_weights())
        start = [w.copy() for w in ours.get_weights()]
        assert type(ours.optimizer).__name__ == "LossScaleOptimizer"
        batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
        fit_distributed(tf.distribute.get_strategy(), ours, batches.repeat(), batches, epochs=1, initial_epoch=0,
                        steps_per_epoch=1, callbacks=[])
        theirs.train_on_batch(x, y)
    moved = [np.abs(a - s).max() for a, s in zip(ours.get_weights(), start)]
    expected = [np.abs(b - s).max() for b, s in zip(theirs.get_weights(), start)]
    assert min(expected) > 1e-4
    for got, want, size in zip(ours.get_weights(), theirs.get_weights(), expected):
        assert np.abs(got - want).max() <= 0.05 * size, (moved, expected)


def test_two_workers_train_under_mixed_float16(fashion_subset_dir, tmp_path):
    """The loss-scaled step across two workers (the optimizer's overflow check made common to both)."""
    results = run_job(tmp_path, fashion_subset_dir, timeout=400, precision="mixed_float16", epochs="1",
                      export_onnx="false")
    for _, code, _, stderr in results:
        assert code == 0, stderr[-3000:]
    metrics = json.loads((tmp_path / "algo-1" / "model" / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.5, metrics["test_accuracy"]
