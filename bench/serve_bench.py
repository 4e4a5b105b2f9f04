"""Serving benchmark: convlab's server against the transport ceiling, MLServer and a naive floor,
on the same model, images and client, in one run.

    python bench/serve_bench.py [--model-dir DIR] [--requests 2000] [--rounds 4]

(a) convlab: `python -m inference.server` (uvicorn + Starlette, ONNX Runtime, micro-batching);
(b) bare: uvicorn + Starlette returning a fixed 80-byte JSON, no model: the transport ceiling;
(c) MLServer: a custom runtime on the same model.onnx, V2 REST API, in its best configurations
    (bench/mlserver_peer.py: in process with and without adaptive batching, and one worker process;
    installed once with httptools into .cache/bench/mlserver-venv); ratios are against the best;
(d) naive: Flask calling Keras `model.predict` per request, as many tutorials serve a model.
One 28x28 Fashion-MNIST test image per request (PNG; a V2 UINT8 tensor for MLServer), from 1 and
from 16 concurrent keep-alive clients; (a)-(c) run together and take turns in short bursts.
Printed: p50/p99 latency and requests/s of each, every ratio and target; cold start (process
start to the first /ping 200) with the ONNX and the SavedModel backend; images/s through the
handler at batch 256 against the bare ONNX Runtime call.
Without --model-dir a small CNN is trained first (1 epoch, 6,000 images) with the `train` program.
"""
from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.http_load import Target, drive, interleaved  # noqa: E402
from bench import mlserver_peer, serve_peers  # noqa: E402
from bench.serve_checks import checks  # noqa: E402
from bench.serve_stages import handler_stages, handler_throughput  # noqa: E402
from inference.local import LocalServer, free_port, request  # noqa: E402

FASHION = Path("/usr/share/datasets/fashion-mnist")


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


def warm(target: Target, count: int) -> None:
    drive(target, 1, count)


def cold_start(model_dir: Path, backend: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        server = LocalServer(model_dir, args=["--backend", backend]).start()
        try:
            times.append(server.wait_ready(120))
        finally:
            server.stop()
    return statistics.median(times)


def start_mlservers(scratch: Path, model_dir: Path, names: list[str]) -> dict:
    """{configuration: (process, http port, seconds to ready)} of MLServer in each configuration."""
    started = {}
    try:
        for name in names:
            ports = {"http": free_port(), "grpc": free_port(), "metrics": free_port()}
            process, ready = mlserver_peer.start(scratch, model_dir, name, ports)
            started[name] = (process, ports["http"], ready)
    except BaseException:
        stop_mlservers(started)
        raise
    return started


def stop_mlservers(started: dict) -> None:
    for process, _, _ in started.values():
        process.terminate()
        process.wait(30)


def agreement(convlab: Target, mlserver: Target, count: int = 50) -> float:
    """Share of images on which both servers give the same class (they serve the same model.onnx)."""
    same = 0
    for png_body, v2 in zip(convlab.bodies[:count], mlserver.bodies[:count]):
        ours = json.loads(request(convlab.port, "POST", "/invocations", png_body, {"Content-Type": "image/png"})[2])
        status, _, payload = request(mlserver.port, "POST", mlserver.path, v2, {"Content-Type": "application/json"})
        if status != 200:
            raise RuntimeError(f"mlserver answered {status}: {payload[:300]!r}")
        same += int(ours["predictions"][0]["class_index"] == int(mlserver_peer.v2_scores(payload)[0].argmax()))
    return same / count


def peer_rows(scratch: Path, model_dir: Path, images: np.ndarray, args: argparse.Namespace) -> dict:
    """convlab, the bare transport ceiling and MLServer in each configuration, up together, driven in turns."""
    bodies = [png(image) for image in images]
    port = free_port()
    bare = LocalServer(model_dir, port=port, command=serve_peers.bare_command(scratch, port))
    mlservers = {} if args.ceiling_only else start_mlservers(scratch, model_dir, args.mlserver)
    results: dict = {"mlserver_ready_s": {name: ready for name, (_, _, ready) in mlservers.items()}}
    # With --tuned-env, a second convlab server with those settings joins the same turns.
    tuned_env = dict(pair.split("=", 1) for pair in args.tuned_env)
    tuned = LocalServer(model_dir, args=["--backend", "onnx"], env=tuned_env) if tuned_env else None
    try:
        with LocalServer(model_dir, args=["--backend", "onnx"]) as convlab, bare, tuned or contextlib.nullcontext():
            targets = [Target("convlab", convlab.port, bodies, pid=convlab.process.pid),
                       Target("bare", bare.port, bodies, pid=bare.process.pid)]
            v2 = [mlserver_peer.v2_body(image) for image in images]
            for name, (process, mlserver_port, _) in mlservers.items():
                targets.append(Target(f"mlserver:{name}", mlserver_port, v2,
                                      f"/v2/models/{mlserver_peer.MLSERVER_MODEL}/infer", "application/json",
                                      process.pid))
                results.setdefault("agreement", agreement(targets[0], targets[-1]))
            if tuned:
                targets.append(Target("tuned", tuned.port, bodies, pid=tuned.process.pid))
            for target in targets:
                warm(target, 200)
            for clients in (1, 16):
                before = json.loads(request(convlab.port, "GET", "/ping")[2])
                level = interleaved(targets, clients, args.requests, args.rounds)
                after = json.loads(request(convlab.port, "GET", "/ping")[2])
                level["convlab"]["images_per_call"] = (
                    (after["batched_images"] - before["batched_images"])
                    / max(1, after["batched_model_calls"] - before["batched_model_calls"]))
                for name, row in level.items():
                    results[f"{name}/{clients}"] = row
    finally:
        stop_mlservers(mlservers)
    return results


def naive_rows(scratch: Path, model_dir: Path, images: np.ndarray, requests_per_level: int) -> dict:
    script = scratch / "naive_server.py"
    script.write_text(serve_peers.NAIVE_SERVER)
    port = free_port()
    target = Target("naive", port, [png(image) for image in images])
    results = {}
    with LocalServer(model_dir, port=port, command=[sys.executable, str(script), str(model_dir), str(port)]):
        warm(target, 10)
        for clients in (1, 16):
            results[f"naive/{clients}"] = drive(target, clients, requests_per_level).summary()
    return results


def print_rows(results: dict, model_dir: Path) -> None:
    import importlib.util

    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    print(f"model: {model_dir}   machine: {os.cpu_count()} CPUs   python {sys.version.split()[0]}   "
          f"uvicorn: {http} parser, {loop} event loop"
          + (f"   mlserver {mlserver_peer.version()} (httptools)" if results.get("mlserver_ready_s") else ""))
    print(f"{'server':<22}{'clients':>8}{'requests':>10}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}"
          f"{'CPU ms/req: server':>20}{'client':>8}")
    names = ["bare", "convlab", "tuned", *(f"mlserver:{n}" for n in results.get("mlserver_ready_s", {})), "naive"]
    for name in names:
        if f"{name}/1" not in results:
            continue
        for clients in (1, 16):
            row = results[f"{name}/{clients}"]
            cpu = f"{row['server_cpu_ms']:.3f}" if name != "naive" else "-"
            print(f"{name:<22}{clients:>8}{row['requests']:>10}{row['p50']:>10.2f}{row['p99']:>10.2f}"
                  f"{row['rps']:>10.0f}{cpu:>20}{row['client_cpu_ms']:>8.3f}")
    print()


def print_extras(results: dict, cold: dict, throughput: dict | None, args: argparse.Namespace) -> None:
    print(f"micro-batching: {results['convlab/1']['images_per_call']:.2f} images per model call at 1 client, "
          f"{results['convlab/16']['images_per_call']:.2f} at 16 clients")
    if "agreement" in results:
        ready = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in results["mlserver_ready_s"].items())
        print(f"mlserver configurations: " + "; ".join(f"{name} {mlserver_peer.CONFIGS[name]}" for name in
                                                       results["mlserver_ready_s"]))
        print(f"same class from convlab and mlserver on {results['agreement']:.0%} of 50 images; "
              f"mlserver to model ready: {ready}")
        for clients in (1, 16):
            name, row = mlserver_peer.best(results, clients)
            print(f"mlserver's best at {clients:>2} client(s): {name} ({row['rps']:,.0f} req/s)")
    savedmodel = (f", savedmodel {cold['savedmodel']:.2f} s ({cold['savedmodel'] / cold['onnx']:.1f}x)"
                  if "savedmodel" in cold else "")
    print(f"cold start to /ping 200 (median of {args.cold_start_repeats}): onnx {cold['onnx']:.2f} s{savedmodel}")
    if throughput:
        print(f"batch 256: bare onnxruntime call {throughput['onnxruntime']:,.0f} images/s "
              f"(a session with default options: {throughput['onnxruntime_default']:,.0f}); handler (npy in, npy "
              f"out) {throughput['handler_npy']:,.0f} images/s "
              f"({throughput['handler_npy'] / throughput['onnxruntime']:.2f}x); handler (npy in, JSON out) "
              f"{throughput['handler_json']:,.0f} images/s ({throughput['handler_json'] / throughput['onnxruntime']:.2f}x)")
    print()


def print_stages(results: dict, stages: dict) -> None:
    """Server CPU per request beyond the bare app, against the handler's own work at batch 1."""
    for clients in (1, 16):
        extra = results[f"convlab/{clients}"]["server_cpu_ms"] - results[f"bare/{clients}"]["server_cpu_ms"]
        print(f"{clients:>2} client(s): convlab's server CPU beyond the bare app {extra:.3f} ms/request")
    print(f"handler at batch 1, in process: decode {stages['decode']:.3f} + predict {stages['predict']:.3f} + "
          f"encode {stages['encode']:.3f} = {stages['handler']:.3f} ms; the rest of the CPU beyond the bare app "
          "is the app's request path (body, context, micro-batcher, model-thread hand-off, response)")
    b1, b16, floor = results["bare/1"], results["bare/16"], results["bare/16"]["server_cpu_ms"] + stages["handler"]
    print(f" 1 client:  p50 bound with an app path of 0 ms: ceiling {b1['p50']:.2f} + handler {stages['handler']:.3f}"
          f" = {b1['p50'] + stages['handler']:.2f} ms\n16 clients: throughput bound with an app path of 0 ms on one core:"
          f" bare {b16['server_cpu_ms']:.3f} + handler {stages['handler']:.3f} = {floor:.3f} ms CPU/request, at most "
          f"{1000 / floor:,.0f} req/s = {min(1.0, 1000 / floor / b16['rps']):.0%} of the ceiling's {b16['rps']:,.0f}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, help="a trained model_dir with model.onnx and model.keras")
    parser.add_argument("--requests", type=int, default=2000, help="requests per server and load level")
    parser.add_argument("--rounds", type=int, default=4, help="turns the servers take at each load level")
    parser.add_argument("--naive-requests", type=int, default=320, help="requests per load level for the naive server")
    parser.add_argument("--cold-start-repeats", type=int, default=3)
    parser.add_argument("--tuned-env", action="append", default=[], metavar="KEY=VALUE",
                        help="also run a convlab server with this environment (e.g. CONVLAB_ONNX_THREADS=1), "
                             "as row 'tuned'")
    parser.add_argument("--mlserver", type=lambda text: text.split(","), default=list(mlserver_peer.CONFIGS),
                        help="MLServer configurations to run, comma-separated (default: "
                             f"{','.join(mlserver_peer.CONFIGS)}; see bench/mlserver_peer.py)")
    parser.add_argument("--ceiling-only", action="store_true",
                        help="only convlab and the bare transport ceiling (no MLServer, naive server, SavedModel "
                             "cold start or batch-256 throughput): the ceiling targets in a short run")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="serve-bench-") as scratch:
        scratch = Path(scratch)
        model_dir = args.model_dir or train_model(scratch)
        if not (model_dir / "model.onnx").is_file():
            raise SystemExit(f"{model_dir}/model.onnx not found: export it with training.onnx_export.export_onnx")
        images = test_images(500)
        results = peer_rows(scratch, model_dir, images, args)
        backends = ("onnx",) if args.ceiling_only else ("onnx", "savedmodel")
        if not args.ceiling_only:
            results.update(naive_rows(scratch, model_dir, images, args.naive_requests))
        cold = {backend: cold_start(model_dir, backend, args.cold_start_repeats) for backend in backends}
        throughput = None if args.ceiling_only else handler_throughput(model_dir, images)
        stages = handler_stages(model_dir, png(images[0]))

    print()
    print_rows(results, model_dir)
    print_extras(results, cold, throughput, args)
    print_stages(results, stages)
    for name, met, value in checks(results, cold):
        print(f"target {name}: {value} ({'met' if met else 'NOT met'})")
    if "tuned/1" in results:
        print(f"tuned ({' '.join(args.tuned_env)}), same targets:")
        for name, met, value in checks({**results, **{k.replace("tuned/", "convlab/"): v for k, v in results.items()
                                                       if k.startswith("tuned/")}}, cold)[:10]:
            print(f"  {name}: {value} ({'met' if met else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
