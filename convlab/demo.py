"""`convlab demo` (`make demo`): the whole lab on this machine, no AWS account needed.

1. Train the baseline MLP and the CNN on the full Fashion-MNIST through the SageMaker entry point
   in local mode (emulated /opt/ml) and compare them.
2. Serve the CNN with the SageMaker HTTP server and classify test images over HTTP.
3. Run a quick controlled experiment and write the lab report with its figures.
4. Package model.tar.gz and run the deploy chain against an embedded AWS (moto) whose policy refuses
   endpoints as a lab account does; show where the batch predictions landed and how accurate they are.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

log = logging.getLogger("convlab.demo")

MODELS = {
    "mlp": {"model": "mlp", "dense": "256,128"},
    "cnn": {"model": "cnn", "depth": 2, "filters": 32, "kernel_size": 3, "dense": "128", "dropout": 0.25},
}


def banner(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def train_models(work: Path, data_dir: Path, epochs: int, max_train: int) -> dict[str, Path]:
    from training import train as entry
    from training.local import prepare_opt_ml

    model_dirs, rows = {}, []
    for name, hps in MODELS.items():
        hps = {**hps, "epochs": epochs, "seed": 1, "max_train_samples": max_train}
        root = prepare_opt_ml(work / name, {"train": str(data_dir)}, hps)
        if entry.main([], root=root) != 0:
            raise SystemExit(f"training the {name} failed: {(root / 'output' / 'failure').read_text()}")
        model_dirs[name] = root / "model"
        metrics = json.loads((root / "model" / "metrics.json").read_text())
        rows.append((name, metrics))
    banner("baseline MLP vs CNN (full Fashion-MNIST, test set never used for selection)")
    print(f"{'model':<6}{'params':>10}{'FLOPs/image':>14}{'val acc':>10}{'test acc':>10}{'s/epoch':>10}")
    for name, m in rows:
        print(f"{name:<6}{m['params']:>10,}{m['flops_per_image']:>14,}{m['val_accuracy']:>10.4f}"
              f"{m['test_accuracy']:>10.4f}{m['mean_seconds_per_epoch']:>10.1f}")
    print(f"trained on {rows[0][1]['num_train']} images, validated on {rows[0][1]['num_val']}, "
          f"tested on {rows[0][1]['num_test']}; {epochs} epochs")
    return model_dirs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="convlab demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", default="work/demo")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--max-train-samples", type=int, default=0, help="0 = all 60,000 images")
    parser.add_argument("--skip", action="append", default=[], choices=["serve", "report", "deploy"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("botocore", "boto3", "sagemaker", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from training.data import find_fashion_mnist

    data_dir = find_fashion_mnist()
    if data_dir is None:
        raise SystemExit("Fashion-MNIST not found: run `make data` (scripts/get_fashion_mnist.sh)")
    work = Path(args.work_dir).resolve()
    started = time.perf_counter()
    banner("1. training through the SageMaker entry point (local mode)")
    model_dirs = train_models(work / "train", data_dir, args.epochs, args.max_train_samples)
    for step in STEPS:
        if step.__name__.split("_")[1] not in args.skip:
            step(work, data_dir, model_dirs)
    banner(f"done in {time.perf_counter() - started:.0f} s; everything is under {work}")
    return 0


def step_serve(work: Path, data_dir: Path, model_dirs: dict[str, Path], count: int = 8) -> None:
    """Start the real server process on the CNN and classify test images sent as PNG over HTTP."""
    import io

    from PIL import Image

    from inference.local import LocalServer, invoke
    from training.data import read_channel

    banner("2. serving the CNN locally (SageMaker HTTP contract, no Docker)")
    test = read_channel(data_dir, "test")
    right = 0
    with LocalServer(model_dirs["cnn"]) as server:
        print(f"server ready at http://127.0.0.1:{server.port} (GET /ping, POST /invocations)")
        for index in range(count):
            buffer = io.BytesIO()
            Image.fromarray(test.images[index][..., 0]).save(buffer, format="PNG")
            status, _, body = invoke(server.port, buffer.getvalue(), "image/png", "application/json")
            if status != 200:
                raise SystemExit(f"POST /invocations answered {status}: {body[:300]!r}")
            prediction = json.loads(body)["predictions"][0]
            truth = test.classes[int(test.labels[index])]
            right += prediction["label"] == truth
            print(f"POST /invocations test image {index}: predicted {prediction['label']:<12} "
                  f"(p={max(prediction['probabilities'].values()):.2f})  true {truth}")
    print(f"{right}/{count} correct over HTTP")


def step_deploy(work: Path, data_dir: Path, model_dirs: dict[str, Path], count: int = 1000) -> None:
    """Package the CNN and run the deploy chain against an embedded AWS that refuses endpoints and
    transform jobs as a lab account's policy does: the chain ends in local batch transform on S3."""
    from deploy.fallback import summary_line
    from deploy.sandbox_run import sandbox_deploy
    from deploy.score import write_image_folder
    from training.data import read_channel

    banner("4. deploy: model.tar.gz, registration, endpoint -> batch transform -> local (embedded AWS)")
    test = read_channel(data_dir, "test")
    classes = json.loads((model_dirs["cnn"] / "labels.json").read_text())
    images = work / "deploy-images"
    write_image_folder(test.images[:count], test.labels[:count], classes, images)
    result = sandbox_deploy(model_dirs["cnn"], images, work_dir=work / "deploy")
    print(summary_line(result))


def step_report(work: Path, data_dir: Path, model_dirs: dict[str, Path]) -> None:
    """The quick version of every built-in study (2 seeds, a subset, 2 epochs) and the lab report."""
    from report.cli import main as report_main
    from training.experiments.cli import main as study_main

    banner("3. controlled experiments (quick version) and the lab report")
    runs = work / "runs"
    if study_main(["--all", "--demo", "--runs", str(runs), "--train", str(data_dir)]) != 0:
        raise SystemExit("the studies failed; see the messages above")
    if report_main(["--runs", str(runs), "--name", "demo", "--out", "reports"]) != 0:
        raise SystemExit("the report failed; see the messages above")
    print(f"report: {Path('reports/demo/index.html').resolve()} (and README.md beside it)")


STEPS: list = [step_serve, step_report, step_deploy]

if __name__ == "__main__":
    sys.exit(main())
