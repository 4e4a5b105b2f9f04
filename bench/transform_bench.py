"""Local batch transform against a plain sequential loop, on the same moto S3, in one run.

Baseline, per image: get_object -> decode (Pillow, scale) -> keras model.predict -> put_object.
convlab: deploy.transform.run_transform (pooled downloads, batched predict_fn, pooled uploads).
Both read the same PNGs (Fashion-MNIST test images) and write `<key>.out`; model loading is not
timed. The moto server runs in its own process (`python -m deploy.sandbox`), as S3 is remote
to a real client; --in-process runs it in this one. The same pair also runs on a local folder,
where storage costs nothing. Prints images per second for both and the ratios. Target: >= 20x.

    python bench/transform_bench.py [--images 2000] [--baseline-images 200] [--model-dir DIR]

Without --model-dir a small CNN is trained first (1 epoch on 6,000 images).
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from deploy.score import class_folder  # noqa: E402

BUCKET = "transform-bench"


def train_small_cnn(dest: Path) -> Path:
    from training.data import find_fashion_mnist
    from training.train import run_training

    data = find_fashion_mnist()
    if data is None:
        raise SystemExit("Fashion-MNIST not found: run `make data`, or pass --model-dir")
    hps = {"model": "cnn", "depth": 2, "filters": 16, "dense": "64", "epochs": 1, "batch_size": 64,
           "seed": 7, "verbose": 0, "max_train_samples": 6000}
    run_training(hps, {"train": str(data)}, str(dest))
    return dest


def test_images(count: int) -> tuple[np.ndarray, np.ndarray]:
    from training.data import find_fashion_mnist, read_channel

    found = find_fashion_mnist()
    if found is None:
        raise SystemExit("Fashion-MNIST not found: run `make data`")
    test = read_channel(found, "test")
    return test.images[:count], test.labels[:count]


def png(image: np.ndarray) -> bytes:
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG")
    return buffer.getvalue()


class PlainLoop:
    """The baseline: one image at a time, Keras model.predict, nothing overlapped."""

    def __init__(self, model_dir: Path) -> None:
        import keras

        self.model = keras.models.load_model(model_dir / "model.keras")
        config = json.loads((model_dir / "config.json").read_text())
        self.prep, self.classes = config["preprocessing"], config["classes"]
        shape = (1, self.prep["height"], self.prep["width"], self.prep["channels"])
        self.model.predict(np.zeros(shape, np.float32), verbose=0)

    def predict(self, body: bytes) -> tuple[bytes, int]:
        from PIL import Image

        prep = self.prep
        image = Image.open(io.BytesIO(body)).convert(prep["color_mode"])
        x = np.asarray(image, np.float32).reshape(prep["height"], prep["width"], prep["channels"]) * prep["rescale"]
        probabilities = self.model.predict(x[None], verbose=0)[0]
        index = int(probabilities.argmax())
        out = {"predictions": [{"label": self.classes[index], "class_index": index,
                                "probabilities": dict(zip(self.classes, probabilities.tolist()))}]}
        return json.dumps(out).encode(), index

    def run_s3(self, s3, keys: list[str]) -> tuple[float, dict[str, int]]:
        predicted = {}
        started = time.perf_counter()
        for key in keys:
            body = s3.get_object(Bucket=BUCKET, Key=f"images/{key}")["Body"].read()
            out, predicted[key] = self.predict(body)
            s3.put_object(Bucket=BUCKET, Key=f"baseline/{key}.out", Body=out)
        return time.perf_counter() - started, predicted

    def run_folder(self, source: Path, dest: Path, keys: list[str]) -> float:
        started = time.perf_counter()
        for key in keys:
            out, _ = self.predict((source / key).read_bytes())
            target = dest / f"{key}.out"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(out)
        return time.perf_counter() - started


def start_server(in_process: bool):
    """(environment for boto3, stop function)."""
    if in_process:
        from deploy.sandbox import start_sandbox
        sandbox = start_sandbox()
        return sandbox.environ(), sandbox.stop
    server = subprocess.Popen([sys.executable, "-m", "deploy.sandbox"], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)
    line = server.stdout.readline()
    if not line:
        raise SystemExit("the moto sandbox did not start (python -m deploy.sandbox)")

    def stop() -> None:
        server.terminate()
        server.wait(timeout=30)
    return json.loads(line)["environment"], stop


def run_on_s3(args: argparse.Namespace, bodies: dict[str, bytes], base_keys: list[str], plain: "PlainLoop",
              handler) -> tuple[float, dict, object, dict]:
    """The plain loop and convlab's transform on the moto S3 server: (plain seconds, plain classes,
    convlab's summary, convlab's classes)."""
    import boto3

    from deploy.aws import S3Uri
    from deploy.stores import S3Store
    from deploy.transform import run_transform

    environment, stop = start_server(args.in_process)
    os.environ.update(environment)
    try:
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda k: s3.put_object(Bucket=BUCKET, Key=f"images/{k}", Body=bodies[k]), bodies))
        base_seconds, base_pred = plain.run_s3(s3, base_keys)
        summary = run_transform(S3Store(S3Uri(BUCKET, "images/")), S3Store(S3Uri(BUCKET, "predictions/")),
                                handler, batch_size=args.batch_size, workers=args.workers, progress=False)
        ours = {k: json.loads(s3.get_object(Bucket=BUCKET, Key=f"predictions/{k}.out")["Body"].read())
                ["predictions"][0]["class_index"] for k in base_keys}
    finally:
        stop()
    assert summary.written == len(bodies) and summary.failed == 0, summary.as_dict()
    return base_seconds, base_pred, summary, ours


def run_on_folder(args: argparse.Namespace, bodies: dict[str, bytes], base_keys: list[str], plain: "PlainLoop",
                  handler, work: Path) -> tuple[float, object]:
    """The plain loop and convlab's transform on a local folder: (plain seconds, convlab's summary)."""
    from deploy.stores import LocalStore
    from deploy.transform import run_transform

    folder = work / "images"
    for key, body in bodies.items():
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        (folder / key).write_bytes(body)
    base_seconds = plain.run_folder(folder, work / "baseline-out", base_keys)
    summary = run_transform(LocalStore(folder), LocalStore(work / "predictions"), handler,
                            batch_size=args.batch_size, workers=args.workers, progress=False)
    assert summary.written == len(bodies)
    return base_seconds, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--baseline-images", type=int, default=200,
                        help="images the plain loop runs on (its per-image cost is steady)")
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--in-process", action="store_true", help="run the moto server in this process")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from deploy.transform import Handler

    with tempfile.TemporaryDirectory(prefix="transform-bench-") as tmp:
        work = Path(tmp)
        model_dir = args.model_dir or train_small_cnn(work / "model")
        images, labels = test_images(args.images)
        classes = json.loads((model_dir / "labels.json").read_text())
        keys = [f"shard-{i % 4}/{class_folder(classes[int(y)])}/img-{i:05d}.png" for i, y in enumerate(labels)]
        bodies = dict(zip(keys, (png(image) for image in images)))
        base_keys = keys[:args.baseline_images]
        plain, handler = PlainLoop(model_dir), Handler(model_dir)
        s3_base_seconds, base_pred, s3_ours, ours = run_on_s3(args, bodies, base_keys, plain, handler)
        local_base_seconds, local_ours = run_on_folder(args, bodies, base_keys, plain, handler, work)

    rows = [("S3", len(base_keys), s3_base_seconds, s3_ours), ("folder", len(base_keys), local_base_seconds, local_ours)]
    agree = np.mean([ours[k] == base_pred[k] for k in base_keys])
    where = "in this process" if args.in_process else "in its own process"
    backend = getattr(handler.model, "info", {}).get("backend", "?")
    print(f"moto S3 server {where}; handler backend {backend}; "
          f"batch {args.batch_size}, {args.workers} workers; {os.cpu_count()} CPUs")
    print(f"{'storage':<8}{'plain loop img/s':>18}{'convlab img/s':>15}{'ratio':>8}   (images: plain, convlab)")
    for name, count, seconds, summary in rows:
        base_rate, rate = count / seconds, summary.written / summary.seconds
        print(f"{name:<8}{base_rate:>18.1f}{rate:>15.1f}{rate / base_rate:>7.1f}x   ({count}, {summary.written})")
    print(f"target >= 20x on S3; both gave the same class on {agree:.1%} of the {len(base_keys)} images both ran")
    return 0


if __name__ == "__main__":
    sys.exit(main())
