"""Training settings a performance engineer would try, each in a fresh process, on the lab's CNN.

Each setting runs `python bench/train_throughput.py --one '<json>'` (thread counts must be set
before TensorFlow starts, and a precision policy or image layout is process-wide), trains a few
short epochs on a subset with convlab's input pipeline and prints one JSON line: the median epoch
time over epochs 2..N and images/s. The two-worker run starts two `training.train` processes with
TF_CONFIG on 127.0.0.1 ports, as two SageMaker hosts would, against one process of the same job.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from inference.local import free_ports  # noqa: E402
BASELINE = {"batch_size": 128, "intra": 0, "inter": 0, "layout": "channels_last", "steps_per_execution": 1,
            "precision": "float32"}
# One factor varied at a time from the baseline.
VARIATIONS = [{"batch_size": 64}, {"batch_size": 256}, {"batch_size": 512},
              {"intra": 1, "inter": 1}, {"intra": 2, "inter": 1}, {"intra": 2, "inter": 2},
              {"layout": "channels_first"}, {"steps_per_execution": 4}, {"steps_per_execution": 16},
              {"precision": "mixed_bfloat16"}]


def run_setting(setting: dict, samples: int, epochs: int, timeout: float = 240) -> dict:
    """One setting in a fresh process: its JSON result, or {"error": ...}."""
    spec = json.dumps({**setting, "samples": samples, "epochs": epochs})
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    try:
        result = subprocess.run([sys.executable, str(REPO / "bench" / "train_throughput.py"), "--one", spec],
                                capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {**setting, "error": f"timed out after {timeout:g} s"}
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return {**setting, "error": last[:200]}
    return json.loads(lines[-1])


def sweep(samples: int, epochs: int, progress=print) -> list[dict]:
    """Each variation between two baseline runs (B V1 B V2 B ...), its gain measured against the mean
    of its neighbours, so that load from other processes, which drifts over minutes, cancels; then
    the variations that beat their baselines by > 5 % combined, also between two baselines."""
    baseline = [run_setting(dict(BASELINE), samples, epochs)]
    progress(describe(baseline[0]))
    rows = []
    for variation in VARIATIONS:
        rows.append(run_setting({**BASELINE, **variation}, samples, epochs))
        baseline.append(run_setting(dict(BASELINE), samples, epochs))
        _relative(rows[-1], baseline[-2], baseline[-1])
        progress(describe(rows[-1]))
    best: dict[tuple, tuple[float, dict]] = {}  # per factor: (gain, variation)
    for variation, row in zip(VARIATIONS, rows):
        gain, factor = row.get("vs_baseline", 0), tuple(sorted(variation))
        if gain > 1.05 and gain > best.get(factor, (0, None))[0]:
            best[factor] = (gain, variation)
    if len(best) > 1:
        combined = dict(BASELINE)
        for _, variation in best.values():
            combined.update(variation)
        rows.append({**run_setting(combined, samples, epochs), "combined": True})
        baseline.append(run_setting(dict(BASELINE), samples, epochs))
        _relative(rows[-1], baseline[-2], baseline[-1])
        progress(describe(rows[-1]))
    rates = [b["images_per_second"] for b in baseline if "images_per_second" in b]
    cpu_rates = [b["images_per_cpu_second"] for b in baseline if "images_per_cpu_second" in b]
    summary = {**BASELINE, "baseline_runs": rates, "baseline_cpu_runs": cpu_rates,
               "seconds_per_epoch": baseline[0].get("seconds_per_epoch"), "vs_baseline": 1.0,
               "images_per_second": statistics.median(rates) if rates else 0.0,
               "images_per_cpu_second": statistics.median(cpu_rates) if cpu_rates else 0.0}
    return [summary, *rows]


def _relative(row: dict, before: dict, after: dict) -> None:
    rates = [b["images_per_second"] for b in (before, after) if "images_per_second" in b]
    if rates and "images_per_second" in row:
        row["vs_baseline"] = row["images_per_second"] / statistics.mean(rates)
        row["neighbour_baselines"] = rates


def describe(row: dict) -> str:
    changed = {k: v for k, v in row.items() if k in BASELINE and BASELINE[k] != v}
    name = ", ".join(f"{k}={v}" for k, v in changed.items()) or "baseline"
    if "error" in row:
        return f"{name}: failed ({row['error']})"
    gain = f", {row['vs_baseline']:.2f}x its neighbouring baselines" if "vs_baseline" in row else ""
    return f"{name}: {row['images_per_second']:,.0f} images/s (median epoch {row['median_epoch_s']:.2f} s{gain})"


def _job_root(base: Path, host: str, hosts: list[str], hyperparameters: dict) -> Path:
    root = base / host
    (root / "input" / "config").mkdir(parents=True, exist_ok=True)
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (root / "input" / "config" / "resourceconfig.json").write_text(json.dumps({"current_host": host, "hosts": hosts}))
    return root


def run_job(hosts: list[str], hyperparameters: dict, channel: str, pin: bool, timeout: float = 600) -> dict:
    """`training.train` on each host as a process on this machine; the chief's metrics.json, plus
    images/s from its median epoch over epochs 2..N. pin: each worker on its own core, 1 thread."""
    with tempfile.TemporaryDirectory(prefix="train-workers-") as scratch:
        workers = [f"127.0.0.1:{port}" for port in free_ports(len(hosts))]
        cores = sorted(os.sched_getaffinity(0))
        processes = []
        for index, host in enumerate(hosts):
            root = _job_root(Path(scratch), host, hosts, hyperparameters)
            env = dict(os.environ, CONVLAB_OPT_ML=str(root), SM_CHANNEL_TRAIN=channel, TF_CPP_MIN_LOG_LEVEL="2",
                       PYTHONPATH=str(REPO), SM_HOSTS=json.dumps(hosts), SM_CURRENT_HOST=host)
            if len(hosts) > 1:
                env["TF_CONFIG"] = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker",
                                                                                       "index": index}})
            if pin:
                env.update(TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")
            core = {cores[index % len(cores)]}
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "training.train"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, preexec_fn=(lambda c=core: os.sched_setaffinity(0, c)) if pin else None))
        outputs = [process.communicate(timeout=timeout) for process in processes]
        for process, (_, stderr) in zip(processes, outputs):
            if process.returncode != 0:
                raise RuntimeError(f"training.train exited with {process.returncode}: {stderr[-1500:]}")
        metrics = json.loads((Path(scratch) / hosts[0] / "model" / "metrics.json").read_text())
    seconds = metrics["seconds_per_epoch"]
    median = statistics.median(seconds[1:] if len(seconds) > 1 else seconds)
    return {"workers": len(hosts), "pinned": pin, "seconds_per_epoch": seconds, "median_epoch_s": median,
            "images_per_second": metrics["num_train"] / median, "num_train": metrics["num_train"]}
