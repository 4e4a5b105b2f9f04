"""Local batch transform against a plain sequential loop, on the same moto S3, in one run.

Baseline, per image: get_object -> decode (Pillow, scale) -> keras model.predict -> put_object.
convlab: deploy.transform.run_transform (pooled downloads, batched predict_fn, pooled uploads).
Both read the same PNGs (Fashion-MNIST test images) and write `<key>.out`; model loading is not
timed. The moto server runs in its own process (`python -m deploy.sandbox`), as S3 is remote
to a real client; --in-process runs it in this one. The same pair also runs on a local folder,
where storage costs nothing. Ceilings measured in the same run: on S3, the same number of GET + PUT
pairs of the same objects from as many threads with no model; on the folder, the model-only rate
(decode + predict + encode in memory, no I/O). Targets: convlab >= 80 % of each ceiling; the plain
loop is the floor.

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


def s3_ceiling(keys: list[str], bodies: dict, out_body: bytes, workers: int) -> float:
    """Seconds for the same GET + PUT pair per object as the transform, from `workers` threads with
    the transform's own S3 client settings, and no model: what the S3 server allows."""
    from deploy.aws import client

    s3 = client("s3", max_pool=32)

    def pair(key: str) -> None:
        body = s3.get_object(Bucket=BUCKET, Key=f"images/{key}")["Body"].read()
        assert body == bodies[key]
        s3.put_object(Bucket=BUCKET, Key=f"ceiling/{key}.out", Body=out_body, ContentType="application/json")

    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(pair, keys))
    return time.perf_counter() - started


def model_only(handler, bodies: list[bytes], batch_size: int, repeats: int = 2) -> float:
    """Best seconds to decode, predict (in batches of `batch_size`) and encode every body, in memory."""
    from inference.batching import split_prediction

    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for start in range(0, len(bodies), batch_size):
            contexts = [handler.context("image/png") for _ in bodies[start:start + batch_size]]
            decoded = [handler.decode(body, "image/png", context)
                       for body, context in zip(bodies[start:start + batch_size], contexts)]
            stacked = np.concatenate(decoded)
            prediction = handler.predict(stacked)
            for row, context in enumerate(contexts):
                handler.encode(split_prediction(prediction, row, row + 1, len(stacked), handler.per_row), context)
        best = min(best, time.perf_counter() - started)
    return best


def folder_io_only(folder: Path, dest: Path, out_body: bytes) -> float:
    """Seconds to list the folder, read every image and write a same-size output, in one thread,
    with the transform's own store class and no model: the storage side of the folder's work."""
    from deploy.stores import LocalStore

    source, target = LocalStore(folder), LocalStore(dest)
    started = time.perf_counter()
    for item in list(source.items()):
        source.read(item.relative)
        target.write(item.relative + ".out", out_body, "application/json")
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


def run_s3(args, plain: PlainLoop, handler, keys: list[str], bodies: dict, out_body: bytes) -> dict:
    """On the moto S3 server: the S3 ceiling, convlab's transform, the ceiling again, the plain loop."""
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
            list(pool.map(lambda k: s3.put_object(Bucket=BUCKET, Key=f"images/{k}", Body=bodies[k]), keys))
        ceilings = [s3_ceiling(keys, bodies, out_body, args.workers)]
        ours = run_transform(S3Store(S3Uri(BUCKET, "images/")), S3Store(S3Uri(BUCKET, "predictions/")),
                             handler, batch_size=args.batch_size, workers=args.workers, progress=False)
        ceilings.append(s3_ceiling(keys, bodies, out_body, args.workers))
        base_keys = keys[:args.baseline_images]
        base_seconds, base_pred = plain.run_s3(s3, base_keys)
        classes = {k: json.loads(s3.get_object(Bucket=BUCKET, Key=f"predictions/{k}.out")["Body"].read())
                   ["predictions"][0]["class_index"] for k in base_keys}
    finally:
        stop()
    assert ours.written == len(keys) and ours.failed == 0, ours.as_dict()
    agree = float(np.mean([classes[k] == base_pred[k] for k in base_keys]))
    return {"plain": len(base_keys) / base_seconds, "convlab": ours.written / ours.seconds,
            "ceilings": [len(keys) / seconds for seconds in ceilings], "agree": agree}


def run_folder(args, plain: PlainLoop, handler, keys: list[str], bodies: dict, work: Path, out_body: bytes) -> dict:
    """On a local folder: the model-only rate (no I/O), convlab's transform, the plain loop."""
    from deploy.stores import LocalStore
    from deploy.transform import run_transform

    folder = work / "images"
    for key, body in bodies.items():
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        (folder / key).write_bytes(body)
    model_seconds = model_only(handler, [bodies[k] for k in keys], args.batch_size)
    io_seconds = folder_io_only(folder, work / "io-only", out_body)
    by_workers = {}
    for workers in sorted({args.workers, *args.folder_workers}):
        ours = run_transform(LocalStore(folder), LocalStore(work / f"predictions-{workers}"), handler,
                             batch_size=args.batch_size, workers=workers, progress=False)
        assert ours.written == len(keys), ours.as_dict()
        by_workers[workers] = ours.written / ours.seconds
    base_keys = keys[:args.baseline_images]
    base_seconds = plain.run_folder(folder, work / "baseline-out", base_keys)
    best = max(by_workers, key=by_workers.get)
    return {"plain": len(base_keys) / base_seconds, "convlab": by_workers[best], "best_workers": best,
            "by_workers": by_workers, "model_only": len(keys) / model_seconds, "io_only": len(keys) / io_seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--baseline-images", type=int, default=200,
                        help="images the plain loop runs on (its per-image cost is steady)")
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--folder-workers", type=lambda text: [int(n) for n in text.split(",")], default=[2, 8],
                        help="worker counts also tried on the local folder (default 2,8; the best is compared)")
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
        plain, handler = PlainLoop(model_dir), Handler(model_dir)
        context = handler.context("image/png")
        out_body = handler.encode(handler.predict(handler.decode(bodies[keys[0]], "image/png", context)), context)[0]
        s3 = run_s3(args, plain, handler, keys, bodies, out_body)
        local = run_folder(args, plain, handler, keys, bodies, work, out_body)
    report(args, handler, s3, local, len(keys), len(out_body))
    return 0


def report(args, handler, s3: dict, local: dict, count: int, out_bytes: int) -> None:
    where = "in this process" if args.in_process else "in its own process"
    backend = getattr(handler.model, "info", {}).get("backend", "?")
    print(f"moto S3 server {where}; handler backend {backend}; batch {args.batch_size}, {args.workers} workers; "
          f"{os.cpu_count()} CPUs; {count} images (the plain loop: {args.baseline_images}); output {out_bytes} bytes")
    ceiling = max(s3["ceilings"])
    print(f"{'storage':<8}{'plain loop img/s':>18}{'convlab img/s':>15}{'vs plain':>10}{'ceiling img/s':>15}"
          f"{'of ceiling':>12}   ceiling")
    print(f"{'S3':<8}{s3['plain']:>18.1f}{s3['convlab']:>15.1f}{s3['convlab'] / s3['plain']:>9.1f}x{ceiling:>15.1f}"
          f"{s3['convlab'] / ceiling:>12.0%}   raw GET+PUT pairs, no model "
          f"(before/after: {' / '.join(f'{c:.1f}' for c in s3['ceilings'])})")
    print(f"{'folder':<8}{local['plain']:>18.1f}{local['convlab']:>15.1f}{local['convlab'] / local['plain']:>9.1f}x"
          f"{local['model_only']:>15.1f}{local['convlab'] / local['model_only']:>12.0%}   "
          "decode + predict + encode in memory, no I/O")
    print("folder, convlab img/s by --workers: " + ", ".join(f"{w}: {rate:.0f}" for w, rate in
                                                           local["by_workers"].items())
          + f" (the best, {local['best_workers']}, is compared); storage alone (list, read, write; one "
          f"thread, no model) {local['io_only']:.0f} img/s; both on two cores at best "
          f"{2 / (1 / local['io_only'] + 1 / local['model_only']):.0f} img/s")
    print(f"both gave the same class on {s3['agree']:.1%} of the {args.baseline_images} images both ran")
    for name, share in (("S3: >= 80 % of the S3 ceiling", s3["convlab"] / ceiling),
                        ("folder: >= 80 % of the model-only rate", local["convlab"] / local["model_only"])):
        print(f"target {name}: {share:.0%} ({'met' if share >= 0.8 else 'NOT met'})")
    print(f"floor (plain loop): {s3['convlab'] / s3['plain']:.1f}x on S3, {local['convlab'] / local['plain']:.1f}x "
          "on the folder")


if __name__ == "__main__":
    sys.exit(main())
