"""How a study's runs train fastest on this machine: the base CNN's epoch time in float32 and in
mixed_bfloat16, as one process on every core and as two processes pinned one per core, in one run.

    python bench/study_speed.py [--images 20000] [--epochs 2]

Each configuration trains the base CNN of training/studies/base.json through the entry point on a
stratified subset; the last epoch's time counts (the first includes tracing). Printed: seconds per
epoch and the study's throughput (epochs of all processes per second) as a ratio to one float32
process, the baseline the study ran with before.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FASHION = "/usr/share/datasets/fashion-mnist"
CHILD = """
import json, sys
sys.path.insert(0, {repo!r})
from training.train import run_training
metrics = run_training(json.loads(sys.argv[1]), {{"train": {data!r}}}, sys.argv[2])
print(json.dumps(metrics["seconds_per_epoch"]))
"""


def hyperparameters(precision: str, images: int, epochs: int) -> dict:
    base = json.loads((REPO / "training" / "studies" / "base.json").read_text())["hyperparameters"]
    hp = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in base.items()}
    hp.update(epochs=str(epochs), precision=precision, max_train_samples=str(images), max_test_samples="1000",
              verbose="0", export_onnx="false", seed="0")
    return hp


def measure(precision: str, cores: list[list[int]] | None, args, scratch: Path) -> list[float]:
    """Last-epoch seconds of each process (one per entry of `cores`; None: one unpinned process)."""
    script = scratch / "child.py"
    script.write_text(CHILD.format(repo=str(REPO), data=FASHION))
    hp = json.dumps(hyperparameters(precision, args.images, args.epochs))
    processes = []
    for index, pinned in enumerate(cores or [None]):
        prefix = ["taskset", "-c", ",".join(map(str, pinned))] if pinned else []
        processes.append(subprocess.Popen(prefix + [sys.executable, str(script), hp, str(scratch / f"m{index}")],
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")))
    seconds = []
    for process in processes:
        out, _ = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"training failed ({precision}, cores {cores})")
        seconds.append(json.loads(out.strip().splitlines()[-1])[-1])
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20000, help="training images (a stratified subset)")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args(argv)
    cores = sorted(os.sched_getaffinity(0))
    pinned = [[core] for core in cores]
    rows = []
    with tempfile.TemporaryDirectory(prefix="study-speed-") as scratch:
        for precision in ("float32", "mixed_bfloat16"):
            for layout, layout_cores in (("one process", None), (f"{len(cores)} pinned", pinned)):
                seconds = measure(precision, layout_cores, args, Path(scratch))
                rows.append((precision, layout, seconds, len(seconds) / (sum(seconds) / len(seconds))))
    baseline = rows[0][3]
    print(f"base CNN, {args.images:,} images, last of {args.epochs} epochs; {len(cores)} cores")
    for precision, layout, seconds, rate in rows:
        print(f"{precision:<16}{layout:<14} s/epoch {', '.join(f'{s:.2f}' for s in seconds):<14} "
              f"study throughput {rate / baseline:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
