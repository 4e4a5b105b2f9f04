"""Profile convlab's server process under the serving benchmark's load: where its event loop spends
CPU per request. The real server (`python -m inference.server`) runs under cProfile; the bench's
client sends PNGs from 1 or 16 keep-alive connections; SIGTERM ends it and the profile is printed
(the event loop's thread; model threads appear as the waits that hand work to them).

    python bench/serve_profile.py --model-dir DIR [--clients 1] [--requests 3000] [--top 25]
"""
from __future__ import annotations

import argparse
import pstats
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.http_load import Target, drive  # noqa: E402
from bench.serve_bench import png, test_images  # noqa: E402
from inference.local import LocalServer, free_port  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    bodies = [png(image) for image in test_images(200)]
    with tempfile.TemporaryDirectory(prefix="serve-profile-") as scratch:
        output, port = Path(scratch) / "server.prof", free_port()
        command = [sys.executable, "-m", "cProfile", "-o", str(output), "-m", "inference.server",
                   "--model-dir", str(args.model_dir), "--host", "127.0.0.1", "--port", str(port), "--backend", "onnx"]
        with LocalServer(args.model_dir, port=port, command=command) as server:
            target = Target("convlab", port, bodies, pid=server.process.pid)
            drive(target, 1, 200)
            load = drive(target, args.clients, args.requests).summary()
        print(f"{load['requests']} requests from {args.clients} client(s): {load['rps']:.0f} req/s, "
              f"server CPU {load['server_cpu_ms']:.3f} ms/request (under the profiler)")
        stats = pstats.Stats(str(output))
        stats.sort_stats("tottime").print_stats(args.top)
        print("convlab's own functions, logging and asyncio waits, by cumulative time:")
        stats.sort_stats("cumulative").print_stats(r"inference/|logging/__init__|asyncio/tasks", args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
