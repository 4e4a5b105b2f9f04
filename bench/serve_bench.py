"""Serving benchmark: convlab's server against a naive one, on the same model, in one run.

    python bench/serve_bench.py [--model-dir DIR]

(a) convlab: `python -m inference.server` (uvicorn + Starlette, ONNX Runtime, micro-batching);
(b) naive: Flask calling Keras `model.predict` per request, as many tutorials serve a model.
Both get the same load: one 28x28 PNG (a real Fashion-MNIST test image) per request, from 1 and
from 16 concurrent keep-alive clients. Printed: p50/p99 latency and requests/s of each, and the
ratios; cold start (process start to the first /ping 200) with the ONNX and the SavedModel
backend; images/s through the handler at batch 256 against the bare ONNX Runtime call.
Without --model-dir a small CNN is trained first (1 epoch, 6,000 images) with the `train` program.
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from inference.local import LocalServer, free_port, request  # noqa: E402

FASHION = Path("/usr/share/datasets/fashion-mnist")

NAIVE_SERVER = '''
import io, json, sys
import numpy as np, keras
from flask import Flask, jsonify, request
from PIL import Image
from werkzeug.serving import make_server

model_dir, port = sys.argv[1], int(sys.argv[2])
model = keras.models.load_model(model_dir + "/model.keras")
classes = json.load(open(model_dir + "/labels.json"))
app = Flask("naive")


@app.get("/ping")
def ping():
    return "", 200


@app.post("/invocations")
def invocations():
    image = Image.open(io.BytesIO(request.get_data())).convert("L").resize((28, 28))
    x = np.asarray(image, np.float32)[None, :, :, None] / 255.0
    p = model.predict(x, verbose=0)[0]
    i = int(p.argmax())
    return jsonify({"label": classes[i], "class_index": i, "probabilities": dict(zip(classes, p.tolist()))})


make_server("127.0.0.1", port, app, threaded=True).serve_forever()
'''


def test_images(count: int) -> np.ndarray:
    with gzip.open(FASHION / "t10k-images-idx3-ubyte.gz") as handle:
        data = handle.read()
    return np.frombuffer(data, np.uint8, offset=16).reshape(-1, 28, 28)[:count]


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def train_model(workdir: Path) -> Path:
    """A small CNN through the container's `train` program on an emulated /opt/ml."""
    root = workdir / "opt_ml"
    (root / "input" / "config").mkdir(parents=True)
    hyperparameters = {"model": "cnn", "epochs": "1", "max_train_samples": "6000", "verbose": "0"}
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    env = dict(os.environ, CONVLAB_OPT_ML=str(root), SM_CHANNEL_TRAIN=str(FASHION), TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=str(REPO), CONVLAB_PYTHON=sys.executable)
    print("training a CNN for the benchmark (1 epoch, 6,000 images) ...", flush=True)
    result = subprocess.run([str(REPO / "scripts" / "train")], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"training failed:\n{result.stderr[-3000:]}")
    return root / "model"


def drive(port: int, bodies: list[bytes], clients: int, total: int) -> dict:
    """`total` POSTs from `clients` threads, each on its own keep-alive connection."""
    import http.client

    per_client = total // clients
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def client(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = []
        barrier.wait()
        for i in range(per_client):
            body = bodies[(index * per_client + i) % len(bodies)]
            started = time.perf_counter()
            connection.request("POST", "/invocations", body, {"Content-Type": "image/png"})
            response = connection.getresponse()
            response.read()
            mine.append(time.perf_counter() - started)
            if response.status != 200:
                errors.append(str(response.status))
        connection.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed: {errors[:5]}")
    latencies.sort()
    return {"requests": len(latencies), "rps": len(latencies) / elapsed,
            "p50": statistics.median(latencies) * 1000,
            "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000}


def warm(port: int, body: bytes, count: int) -> None:
    drive(port, [body], 1, count)


def cold_start(model_dir: Path, backend: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        server = LocalServer(model_dir, args=["--backend", backend]).start()
        try:
            times.append(server.wait_ready(120))
        finally:
            server.stop()
    return statistics.median(times)


def handler_throughput(model_dir: Path, images: np.ndarray, rounds: int = 150) -> dict:
    """Images/s at batch 256 through input_fn -> predict_fn -> output_fn, and through the bare
    ONNX Runtime call of the same session (pixels already scaled to float32); also a session with
    ONNX Runtime's default options. The calls alternate, round after round, and each rate comes
    from the median time, so load from other processes hits all of them alike."""
    import onnxruntime as ort

    from inference import handler

    batch = np.resize(images, (256, 28, 28))
    buffer = io.BytesIO()
    np.save(buffer, batch)
    body = buffer.getvalue()
    os.environ["CONVLAB_BACKEND"] = "onnx"
    model = handler.model_fn(str(model_dir))
    default_session = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    scaled = batch[..., None].astype(np.float32) / np.float32(255)
    steps = {
        "onnxruntime_default": lambda: default_session.run(None, {"images": scaled}),
        "onnxruntime": lambda: model.backend.predict(scaled),
        "handler_npy": lambda: handler.output_fn(
            handler.predict_fn(handler.input_fn(body, "application/x-npy"), model), "application/x-npy"),
        "handler_json": lambda: handler.output_fn(
            handler.predict_fn(handler.input_fn(body, "application/x-npy"), model), "application/json"),
    }
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            started = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - started)
    return {name: 256 / statistics.median(values[5:]) for name, values in times.items()}


def measure(model_dir: Path, scratch: Path, args: argparse.Namespace) -> tuple[dict, dict, dict]:
    """(latency and throughput per server and load level, cold start per backend, handler rates)."""
    images = test_images(500)
    bodies = [png(image) for image in images]
    results: dict[str, dict] = {}

    with LocalServer(model_dir, args=["--backend", "onnx"]) as convlab:
        warm(convlab.port, bodies[0], 200)
        for clients in (1, 16):
            before = json.loads(request(convlab.port, "GET", "/ping")[2])
            results[f"convlab/{clients}"] = drive(convlab.port, bodies, clients, args.requests)
            after = json.loads(request(convlab.port, "GET", "/ping")[2])
            results[f"convlab/{clients}"]["images_per_call"] = (
                (after["batched_images"] - before["batched_images"])
                / max(1, after["batched_model_calls"] - before["batched_model_calls"]))

    script = scratch / "naive_server.py"
    script.write_text(NAIVE_SERVER)
    port = free_port()
    naive = LocalServer(model_dir, port=port, command=[sys.executable, str(script), str(model_dir), str(port)])
    with naive:
        warm(port, bodies[0], 10)
        for clients in (1, 16):
            results[f"naive/{clients}"] = drive(port, bodies, clients, args.naive_requests)

    cold = {backend: cold_start(model_dir, backend, args.cold_start_repeats) for backend in ("onnx", "savedmodel")}
    throughput = handler_throughput(model_dir, images)
    return results, cold, throughput


def print_results(model_dir: Path, results: dict, cold: dict, throughput: dict, args: argparse.Namespace) -> None:
    import importlib.util

    print()
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    print(f"model: {model_dir}   machine: {os.cpu_count()} CPUs   python {sys.version.split()[0]}   "
          f"uvicorn: {http} parser, {loop} event loop")
    print(f"{'server':<10}{'clients':>8}{'requests':>10}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}")
    for key, row in results.items():
        name, clients = key.split("/")
        print(f"{name:<10}{clients:>8}{row['requests']:>10}{row['p50']:>10.2f}{row['p99']:>10.2f}{row['rps']:>10.0f}")
    print()
    for clients in (1, 16):
        ours, theirs = results[f"convlab/{clients}"], results[f"naive/{clients}"]
        print(f"{clients:>2} client(s): throughput {ours['rps'] / theirs['rps']:.1f}x the naive server, "
              f"p50 latency {theirs['p50'] / ours['p50']:.1f}x lower")
    print(f"micro-batching: {results['convlab/1']['images_per_call']:.2f} images per model call at 1 client, "
          f"{results['convlab/16']['images_per_call']:.2f} at 16 clients")
    print(f"cold start to /ping 200 (median of {args.cold_start_repeats}): onnx {cold['onnx']:.2f} s, "
          f"savedmodel {cold['savedmodel']:.2f} s ({cold['savedmodel'] / cold['onnx']:.1f}x)")
    print(f"batch 256: bare onnxruntime call {throughput['onnxruntime']:,.0f} images/s "
          f"(a session with default options: {throughput['onnxruntime_default']:,.0f}); handler (npy in, npy out) "
          f"{throughput['handler_npy']:,.0f} images/s ({throughput['handler_npy'] / throughput['onnxruntime']:.2f}x); "
          f"handler (npy in, JSON out) {throughput['handler_json']:,.0f} images/s "
          f"({throughput['handler_json'] / throughput['onnxruntime']:.2f}x)")
    print()
    ratio16 = results["convlab/16"]["rps"] / results["naive/16"]["rps"]
    checks = [(">= 50x the naive throughput at 16 clients", ratio16 >= 50, f"{ratio16:.1f}x"),
              ("p50 <= 2 ms at 1 client", results["convlab/1"]["p50"] <= 2.0, f"{results['convlab/1']['p50']:.2f} ms"),
              ("cold start <= 1.5 s with ONNX", cold["onnx"] <= 1.5, f"{cold['onnx']:.2f} s")]
    for name, met, value in checks:
        print(f"target {name}: {value} ({'met' if met else 'NOT met'})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, help="a trained model_dir with model.onnx and model.keras")
    parser.add_argument("--requests", type=int, default=2000, help="requests per load level for convlab")
    parser.add_argument("--naive-requests", type=int, default=320, help="requests per load level for the naive server")
    parser.add_argument("--cold-start-repeats", type=int, default=3)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="serve-bench-") as scratch:
        model_dir = args.model_dir or train_model(Path(scratch))
        if not (model_dir / "model.onnx").is_file():
            raise SystemExit(f"{model_dir}/model.onnx not found: export it with training.onnx_export.export_onnx")
        results, cold, throughput = measure(model_dir, Path(scratch), args)
    print_results(model_dir, results, cold, throughput, args)
    return 0

if __name__ == "__main__":
    sys.exit(main())
