"""Training throughput of the lab's CNN (3x3 kernels, 32/64 filters, Dense 128), in one run:

1. convlab's input pipeline against a plain `model.fit(x_numpy, y_numpy)`: same model, data, epochs
   and batch size, in one process; median epoch time over epochs 2..N of each and their ratio
   (target <= 0.9).
2. Achieved training FLOP/s: the model's forward FLOPs per image (model_summary) x 3 x images/s,
   against this machine's dense float32 ceiling measured in the same run (a 4096x4096 matmul
   through TensorFlow, best of N); target >= 60 %.
3. Settings, one factor at a time, each in a fresh process on a subset: batch size, intra/inter-op
   threads, channels_first, steps_per_execution, mixed bfloat16 (with the CPU's flags printed).
4. Two local workers (two `training.train` processes with TF_CONFIG) against one, on the same cores.

    python bench/train_throughput.py [--samples 30000] [--epochs 5] [--parts pipelines,sweeps,workers]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LAB_CNN = {"model": "cnn", "depth": 2, "filters": 32, "kernel_size": 3, "dense": "128"}
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")


def cpu_flags() -> list[str]:
    try:
        words = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return []
    return [flag for flag in CPU_FLAGS if flag in words]


def timer_callback():
    import keras

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds, self.cpu_seconds = [], []

        def on_epoch_begin(self, epoch, logs=None):
            self._start, self._cpu = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)
            self.cpu_seconds.append(time.process_time() - self._cpu)

    return Timer()


def steady(seconds: list[float]) -> float:
    """Median epoch time over epochs 2..N (the first traces the step functions)."""
    return statistics.median(seconds[1:] if len(seconds) > 1 else seconds)


def matmul_ceiling(size: int = 4096, repeats: int = 5) -> tuple[float, float]:
    """(FLOP per wall second, FLOP per CPU second of this process) of the best of `repeats` float32
    size x size matmuls through TensorFlow. The second does not depend on other processes' load."""
    import tensorflow as tf

    a = tf.random.normal((size, size), dtype=tf.float32)
    b = tf.random.normal((size, size), dtype=tf.float32)
    tf.linalg.matmul(a, b).numpy()
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        started, cpu = time.perf_counter(), time.process_time()
        tf.linalg.matmul(a, b).numpy()
        best, best_cpu = min(best, time.perf_counter() - started), min(best_cpu, time.process_time() - cpu)
    return 2 * size ** 3 / best, 2 * size ** 3 / best_cpu


def lab_model(batch_size: int, input_shape, steps_per_execution: int = 1):
    """The lab's CNN, compiled as the training entry point compiles it (Adam, no XLA)."""
    import keras

    from training.hyperparameters import parse_hyperparameters
    from training.models import build_model
    from training.train import _compile

    params, config = parse_hyperparameters({**LAB_CNN, "batch_size": batch_size})
    config.input_shape = tuple(input_shape)
    if keras.config.image_data_format() == "channels_first":
        config.spatial_sizes = lambda: []  # its size check reads the shape as (H, W, C)
    keras.utils.set_random_seed(0)
    model = build_model(config)
    _compile(model, params, config, steps_per_epoch=1)
    if steps_per_execution > 1:
        model.compile(optimizer=model.optimizer, loss=model.loss, metrics=["accuracy"], jit_compile=False,
                      steps_per_execution=steps_per_execution)
    return model


def load_images(samples: int):
    from training.data import find_fashion_mnist, read_channel

    data = read_channel(find_fashion_mnist(), "train")
    return data.images[:samples], data.labels[:samples]


def convlab_fit(model, images, labels, batch_size: int, epochs: int, transform=None):
    """model.fit on convlab's training dataset: every epoch's batches, one iterator for the run."""
    from training.pipeline import make_dataset

    dataset = make_dataset(images, labels, batch_size, 1.0 / 255.0, shuffle=True, seed=0, epochs=(0, epochs))
    if transform is not None:
        dataset = dataset.map(transform)
    timer = timer_callback()
    model.fit(dataset, epochs=epochs, steps_per_epoch=-(-len(images) // batch_size), verbose=0,
              callbacks=[timer], shuffle=False)
    return timer


def one_setting(spec: dict) -> dict:
    """Train with one setting in this (fresh) process; the JSON line train_sweeps reads."""
    import tensorflow as tf

    if spec["intra"]:
        tf.config.threading.set_intra_op_parallelism_threads(spec["intra"])
    if spec["inter"]:
        tf.config.threading.set_inter_op_parallelism_threads(spec["inter"])
    import keras

    if spec["precision"] != "float32":
        keras.mixed_precision.set_global_policy(spec["precision"])
    images, labels = load_images(spec["samples"])
    transform, shape = None, images.shape[1:]
    if spec["layout"] == "channels_first":
        keras.config.set_image_data_format("channels_first")
        transform, shape = (lambda x, y: (tf.transpose(x, [0, 3, 1, 2]), y)), (shape[2], shape[0], shape[1])
    model = lab_model(spec["batch_size"], shape, spec["steps_per_execution"])
    timer = convlab_fit(model, images, labels, spec["batch_size"], spec["epochs"], transform)
    median = steady(timer.seconds)
    return {**spec, "seconds_per_epoch": [round(s, 3) for s in timer.seconds], "median_epoch_s": median,
            "images_per_second": len(images) / median, "images_per_cpu_second": len(images) / steady(timer.cpu_seconds)}


def compare_pipelines(args) -> dict:
    """Part 1 and 2: plain fit and convlab's pipeline on the same model; FLOP/s against the matmul."""
    import numpy as np

    from training.models import model_summary

    before = matmul_ceiling(repeats=args.matmul_repeats)
    images, labels = load_images(args.samples)
    plain_model = lab_model(args.batch_size, images.shape[1:])
    flops = model_summary(plain_model)["flops_per_image"]
    plain = timer_callback()
    plain_model.fit(images.astype(np.float32) / 255.0, labels, batch_size=args.batch_size, epochs=args.epochs,
                    shuffle=True, verbose=0, callbacks=[plain])
    ours = convlab_fit(lab_model(args.batch_size, images.shape[1:]), images, labels, args.batch_size, args.epochs)
    after = matmul_ceiling(repeats=args.matmul_repeats)
    return {"images": len(images), "plain": plain.seconds, "convlab": ours.seconds, "convlab_cpu": ours.cpu_seconds,
            "flops_per_image": flops, "ceiling": max(before[0], after[0]), "ceilings": (before[0], after[0]),
            "ceiling_cpu": max(before[1], after[1])}


def lab_flops(batch_size: int) -> int:
    from training.models import model_summary

    return model_summary(lab_model(batch_size, (28, 28, 1)))["flops_per_image"]


def report_pipelines(result: dict, args) -> list[tuple[str, bool, str]]:
    plain_s, ours_s = steady(result["plain"]), steady(result["convlab"])
    rate = result["images"] / ours_s
    achieved = result["flops_per_image"] * 3 * rate
    share = achieved / result["ceiling"]
    print(f"images={result['images']} epochs={args.epochs} batch_size={args.batch_size} "
          f"cores={len(os.sched_getaffinity(0))} cpu flags: {' '.join(cpu_flags()) or '?'}")
    print(f"plain model.fit(numpy): median {plain_s:.2f} s/epoch over epochs 2..{args.epochs} "
          f"(all epochs: {[round(s, 2) for s in result['plain']]})")
    print(f"convlab pipeline:       median {ours_s:.2f} s/epoch over epochs 2..{args.epochs} "
          f"(all epochs: {[round(s, 2) for s in result['convlab']]})")
    print(f"ratio of medians convlab/plain: {ours_s / plain_s:.3f}", flush=True)
    print(f"matmul ceiling (float32 4096x4096, best of {args.matmul_repeats}, before/after training): "
          + " / ".join(f"{c / 1e9:.1f}" for c in result["ceilings"]) + " GFLOP/s")
    print(f"achieved: {result['flops_per_image'] / 1e6:.2f} MFLOP/image forward x 3 x {rate:,.0f} images/s = "
          f"{achieved / 1e9:.1f} GFLOP/s = {share:.1%} of the ceiling")
    per_cpu = result["flops_per_image"] * 3 * result["images"] / steady(result["convlab_cpu"])
    print(f"per CPU-second of this process (independent of other processes' load): training "
          f"{per_cpu / 1e9:.1f} GFLOP, matmul {result['ceiling_cpu'] / 1e9:.1f} GFLOP: "
          f"{per_cpu / result['ceiling_cpu']:.1%}")
    return [("ratio of median epoch times convlab/plain <= 0.9", ours_s / plain_s <= 0.9, f"{ours_s / plain_s:.3f}"),
            (">= 60 % of the matmul ceiling", share >= 0.6, f"{share:.1%}")]


def report_sweep(rows: list[dict], flops: int, ceiling: float) -> None:
    from bench.train_sweeps import BASELINE

    print(f"\n{'setting':<34}{'images/s':>10}{'vs baseline':>13}{'GFLOP/s':>9}{'of ceiling':>12}"
          f"{'img/CPU-s':>11}{'vs baseline':>13}  epochs (s)")
    base_cpu = statistics.median(rows[0].get("baseline_cpu_runs") or [1.0])
    for row in rows:
        changed = {k: v for k, v in row.items() if k in BASELINE and BASELINE[k] != v}
        name = ("combined: " if row.get("combined") else "") + (
            ", ".join(f"{k}={v}" for k, v in changed.items()) or "baseline (batch 128, defaults)")
        if "error" in row:
            print(f"{name:<34}  failed: {row['error']}")
            continue
        rate = row["images_per_second"]
        gflops = flops * 3 * rate / 1e9
        per_cpu = row.get("images_per_cpu_second", 0)
        print(f"{name:<34}{rate:>10,.0f}{row.get('vs_baseline', 0):>12.2f}x{gflops:>9.1f}"
              f"{gflops * 1e9 / ceiling:>11.1%}{per_cpu:>11,.0f}{per_cpu / base_cpu:>12.2f}x  {row['seconds_per_epoch']}")
    runs = rows[0].get("baseline_runs", [])
    print(f"(baseline: median of its {len(runs)} runs, {', '.join(f'{r:,.0f}' for r in runs)} images/s; each other "
          "row against the mean of the baseline runs just before and after it)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=30000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--matmul-repeats", type=int, default=5)
    parser.add_argument("--sweep-samples", type=int, default=6144)
    parser.add_argument("--sweep-epochs", type=int, default=3)
    parser.add_argument("--worker-samples", type=int, default=12000)
    parser.add_argument("--worker-epochs", type=int, default=3)
    parser.add_argument("--parts", default="pipelines,sweeps,workers",
                        help="which parts to run, comma-separated (default: %(default)s)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # one sweep setting, in a fresh process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_setting(json.loads(args.one))))
        return 0
    parts = set(args.parts.split(","))
    checks, result = [], None
    if "pipelines" in parts or "sweeps" in parts:
        result = compare_pipelines(args) if "pipelines" in parts else {
            "flops_per_image": lab_flops(args.batch_size), "ceiling": matmul_ceiling(repeats=args.matmul_repeats)[0]}
    if "pipelines" in parts:
        checks = report_pipelines(result, args)
    if "sweeps" in parts:
        from bench.train_sweeps import sweep

        print(f"\nsettings, one factor at a time ({args.sweep_samples} images, {args.sweep_epochs} epochs each, "
              "median over epochs 2..N, a fresh process each):", flush=True)
        rows = sweep(args.sweep_samples, args.sweep_epochs, progress=lambda line: print("  " + line, flush=True))
        report_sweep(rows, result["flops_per_image"], result["ceiling"])
    if "workers" in parts:
        report_workers(args)
    print()
    for name, met, value in checks:
        print(f"target {name}: {value} ({'met' if met else 'NOT met'})")
    return 0


def report_workers(args) -> None:
    from bench.train_sweeps import run_job
    from training.data import find_fashion_mnist

    hps = {**{k: str(v) for k, v in LAB_CNN.items()}, "batch_size": str(args.batch_size),
           "epochs": str(args.worker_epochs), "max_train_samples": str(args.worker_samples), "export_onnx": "false",
           "verbose": "0", "seed": "3"}
    channel = str(find_fashion_mnist())
    print(f"\nmulti-worker ({args.worker_samples} images, {args.worker_epochs} epochs, training.train, "
          "median epoch over epochs 2..N incl. validation):", flush=True)
    runs = [("one worker", ["algo-1"], False), ("two workers (127.0.0.1, TF_CONFIG)", ["algo-1", "algo-2"], False),
            ("two workers, one core and one thread each", ["algo-1", "algo-2"], True)]
    one = None
    for name, hosts, pin in runs:
        try:
            row = run_job(hosts, hps, channel, pin)
        except (RuntimeError, OSError) as error:
            print(f"  {name}: failed: {str(error)[-300:]}")
            continue
        one = one or row["images_per_second"]
        print(f"  {name:<44}{row['images_per_second']:>8,.0f} images/s ({row['images_per_second'] / one:.2f}x one "
              f"worker)  epochs {[round(s, 2) for s in row['seconds_per_epoch']]}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
