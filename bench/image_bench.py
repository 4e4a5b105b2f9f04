"""Container images: size and cold start (from `docker run` to the first /ping 200), for the full
image and the serve-only image, against the machine's own ceiling measured in the same run: the
same serve-only image running Python's bare http.server (container start + interpreter start +
a socket, and nothing of convlab).

    python bench/image_bench.py --model-dir MODEL_DIR [--runs 5]

Needs a Docker engine and both images (scripts/docker_build.sh; scripts/docker_build.sh
--serve-only). MODEL_DIR is a trained model dir with model.onnx. Targets: serve-only image <= 400 MB
and its cold start <= 1 s.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.local import free_port  # noqa: E402

FULL, SERVE = "convlab:latest", "convlab-serve:latest"


def size_mb(image: str) -> float:
    out = subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", image], capture_output=True,
                         text=True, check=True).stdout
    return int(out) / 1e6


def cold_start(image: str, model_dir: Path, path: str, command: list[str], timeout: float = 120) -> float:
    """Seconds from `docker run` to the first 200 on http://127.0.0.1:PORT{path}."""
    port = free_port()
    name = f"convlab-bench-{uuid.uuid4().hex[:8]}"
    args = ["docker", "run", "-d", "--rm", "--name", name, "--network", "host",
            "-e", f"SAGEMAKER_BIND_TO_PORT={port}", "-v", f"{model_dir}:/opt/ml/model:ro"]
    started = time.perf_counter()
    subprocess.run(args + ["--entrypoint", command[0], image, *[c.format(port=port) for c in command[1:]]],
                   check=True, capture_output=True)
    try:
        while time.perf_counter() - started < timeout:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as response:
                    if response.status == 200:
                        return time.perf_counter() - started
            except OSError:
                time.sleep(0.005)
        raise RuntimeError(f"{image}: no 200 on {path} within {timeout} s")
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    model_dir = args.model_dir.resolve()
    cases = {
        "ceiling: bare http.server in the serve-only image": (SERVE, "/", ["python3", "-m", "http.server",
                                                                            "{port}", "--bind", "127.0.0.1"]),
        f"{SERVE} serve (ONNX Runtime)": (SERVE, "/ping", ["serve"]),
        f"{FULL} serve (ONNX Runtime)": (FULL, "/ping", ["serve"]),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.runs):  # interleaved, so drift on this noisy machine hits every case alike
        for name, (image, path, command) in cases.items():
            times[name].append(cold_start(image, model_dir, path, command))
    medians = {name: statistics.median(values) for name, values in times.items()}
    ceiling = medians["ceiling: bare http.server in the serve-only image"]
    print(f"cold start, median of {args.runs} (docker run -> first 200):")
    for name, value in medians.items():
        print(f"  {name:55s} {value:6.2f} s  ({value / ceiling:4.1f}x the ceiling)")
    sizes = {image: size_mb(image) for image in (SERVE, FULL)}
    print(f"image sizes: {SERVE} {sizes[SERVE]:.0f} MB, {FULL} {sizes[FULL]:.0f} MB "
          f"(serve-only is {sizes[SERVE] / sizes[FULL]:.2f}x the full image)")
    slim = medians[f"{SERVE} serve (ONNX Runtime)"]
    print(f"target: serve-only image <= 400 MB: {'met' if sizes[SERVE] <= 400 else 'NOT met'} "
          f"({sizes[SERVE]:.0f} MB)")
    print(f"target: serve-only cold start <= 1 s: {'met' if slim <= 1.0 else 'NOT met'} ({slim:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
