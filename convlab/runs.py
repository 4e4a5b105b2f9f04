"""Local training runs, each kept in its own folder: `convlab train --local` and `convlab runs`.

    <work-dir>/runs/<run id>/          the emulated /opt/ml of one run (input/, model/, output/,
                                       checkpoints/), its run.json and figures/
    <work-dir>/latest -> runs/<id>     the newest run that finished

A run id is the UTC start time and the hash of the configuration (`20261206-204501-cnn-1a2b3c4d5e`),
so a new run never replaces a model that may still be served from an earlier one.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from training.metrics import near_chance

log = logging.getLogger("convlab.runs")

RUNS = "runs"
LATEST = "latest"
RUN_FILE = "run.json"
# Hyperparameters `convlab runs` shows beside the model type, when they apply to it.
KEY_HYPERPARAMETERS = {"cnn": ("depth", "filters", "kernel_size", "batch_norm", "dropout"), "mlp": ("dense",)}
TRAINING_KEYS = ("epochs", "batch_size", "learning_rate", "lr_schedule")


def runs_dir(work_dir: str | Path) -> Path:
    return Path(work_dir).resolve() / RUNS


def new_run(work_dir: str | Path, hyperparameters: dict, channels: dict[str, str]) -> Path:
    """A new, empty run folder named by the time and the configuration, with its run.json."""
    from training.experiments.records import canonical_hyperparameters, config_id

    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    base = f"{stamp}-{config_id(canonical_hyperparameters(hyperparameters))}"
    parent = runs_dir(work_dir)
    parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 100):
        run = parent / (base if attempt == 1 else f"{base}-{attempt}")
        try:
            run.mkdir()
            break
        except FileExistsError:
            continue
    else:
        raise RuntimeError(f"{parent}: could not make a new run folder for {base}")
    info = {"run_id": run.name, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "channels": {name: _shown_source(source) for name, source in channels.items()},
            "hyperparameters": {k: str(v) for k, v in hyperparameters.items()}}
    (run / RUN_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return run


def _shown_source(source: str) -> str:
    return source if str(source).startswith("s3://") else str(Path(source).resolve())


def newest_run(work_dir: str | Path) -> Path | None:
    """The most recently started run (finished or not): what --resume continues."""
    parent = runs_dir(work_dir)
    found = sorted(p for p in parent.iterdir() if (p / RUN_FILE).is_file()) if parent.is_dir() else []
    return found[-1] if found else None


def mark_latest(work_dir: str | Path, run: Path) -> Path:
    """Point <work-dir>/latest at the run, replacing the link in one rename."""
    link = Path(work_dir).resolve() / LATEST
    temporary = link.with_name(f".{LATEST}.{os.getpid()}")
    if temporary.is_symlink() or temporary.exists():
        temporary.unlink()
    temporary.symlink_to(Path(RUNS) / run.name, target_is_directory=True)
    os.replace(temporary, link)
    return link


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def most_confused(metrics: dict) -> tuple[str, str, int] | None:
    """(true class, predicted class, test images) of the largest off-diagonal confusion count."""
    matrix, classes = metrics.get("confusion_matrix") or [], metrics.get("classes") or []
    cells = [(count, t, p) for t, row in enumerate(matrix) for p, count in enumerate(row) if t != p and count]
    if not cells:
        return None
    count, true, predicted = max(cells, key=lambda c: (c[0], -c[1], -c[2]))
    return classes[true], classes[predicted], count


def summary_lines(run: Path, shown_model_dir: str) -> list[str]:
    """What a finished run says last: accuracy, the worst confusion, where the model is, what to run next."""
    metrics = _read_json(run / "model" / "metrics.json") or {}
    lines = [f"run {run.name}: test accuracy {metrics.get('test_accuracy', float('nan')):.4f} on "
             f"{metrics.get('num_test', 0)} test images, {len(metrics.get('classes', []))} classes, "
             f"{metrics.get('epochs_completed', 0)} epochs"]
    if metrics.get("confusion_matrix") and near_chance(metrics["test_accuracy"], metrics["confusion_matrix"]):
        lines.append("warning: that is at or near chance; see the warning above for what to try")
    pair = most_confused(metrics)
    if pair:
        lines.append(f"most confused: {pair[0]} taken for {pair[1]} ({pair[2]} test images)")
    lines.append(f"model: {shown_model_dir}")
    figures = sorted((run / "figures").glob("*.png"))
    if figures:
        lines.append(f"figures: {', '.join(str(p) for p in figures)}")
    lines.append(f"next: convlab serve --model-dir {shown_model_dir}")
    return lines


def _row(run: Path, latest: Path | None) -> list[str]:
    info = _read_json(run / RUN_FILE) or {}
    metrics = _read_json(run / "model" / "metrics.json")
    hps = (metrics or {}).get("hyperparameters") or info.get("hyperparameters", {})
    config = (metrics or {}).get("config") or {}
    model = config.get("model") or info.get("hyperparameters", {}).get("model", "cnn")
    values = {**hps, **config}
    keys = KEY_HYPERPARAMETERS.get(model, ()) + TRAINING_KEYS
    shown = " ".join(f"{k}={_short(values[k])}" for k in keys if k in values)
    accuracy = f"{metrics['test_accuracy']:.4f}" if metrics else "-"
    mark = "*" if latest is not None and run.resolve() == latest else " "
    data = info.get("channels", {}).get("train", "?")
    return [mark + run.name, info.get("started", "?").replace("T", " ").rstrip("Z"), data, model, shown,
            accuracy, str(run / "model") if metrics else "(no model: unfinished or failed)"]


def _short(value) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def list_runs(work_dir: str | Path) -> list[list[str]]:
    parent = runs_dir(work_dir)
    link = Path(work_dir).resolve() / LATEST
    latest = link.resolve() if link.is_symlink() else None
    runs = sorted(p for p in parent.iterdir() if (p / RUN_FILE).is_file()) if parent.is_dir() else []
    return [_row(run, latest) for run in runs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="convlab runs", description="List the runs `convlab train --local` "
                                     "kept under --work-dir, oldest first; * marks the latest finished one.")
    parser.add_argument("--work-dir", default="work/train", help="the work folder of convlab train "
                                                                 "(default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="one JSON object per run instead of a table")
    args = parser.parse_args(argv)
    rows = list_runs(args.work_dir)
    if not rows:
        print(f"no runs in {runs_dir(args.work_dir)}; convlab train --local --train DATA_DIR makes one",
              file=sys.stderr)
        return 1
    header = ["run", "started (UTC)", "data", "model", "hyperparameters", "test acc", "model dir"]
    if args.json:
        for row in rows:
            print(json.dumps(dict(zip(header, [row[0].lstrip("* ").strip(), *row[1:]]))))
        return 0
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0
