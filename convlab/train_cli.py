"""`convlab train`: the training entry point on this machine, with /opt/ml emulated under a folder."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from training import train as entry
from training.environment import parse_cli_hyperparameters
from training.local import prepare_opt_ml, stage_source_dir


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="convlab train",
        description="Train through the SageMaker entry point. Without --local it reads /opt/ml (or "
                    "CONVLAB_OPT_ML) like the container's `train` program. Any other --name value pair is a "
                    "hyperparameter (python -m training.train --help lists them).")
    parser.add_argument("--local", action="store_true", help="emulate /opt/ml under --work-dir")
    parser.add_argument("--work-dir", default="work/train", help="folder for the emulated /opt/ml tree")
    parser.add_argument("--train", help="train channel: a local folder/file or s3://bucket/prefix")
    parser.add_argument("--test", help="optional test channel: a local folder/file or s3://bucket/prefix")
    parser.add_argument("--hyperparameters", help="JSON file of hyperparameters")
    args, rest = parser.parse_known_args(argv)
    if not args.local:
        return entry.main(rest)
    if not args.train:
        parser.error("--local needs --train (a folder, a file or an s3:// prefix)")
    entry.configure_logging()
    channels = {"train": args.train}
    if args.test:
        channels["test"] = args.test
    try:
        hyperparameters = _read_hyperparameters(args.hyperparameters)
        hyperparameters.update(parse_cli_hyperparameters(rest))
        root = prepare_opt_ml(args.work_dir, channels, hyperparameters)
    except Exception as exc:  # a bad path, file or S3 prefix: one line, no traceback
        print(f"convlab train: {exc}", file=sys.stderr)
        return 2
    code = entry.main([], root=root)
    if code == 0:
        logging.getLogger("convlab.train").info("artifacts in %s, metrics in %s", root / "model",
                                                root / "model" / "metrics.json")
    else:
        logging.getLogger("convlab.train").error("failure file: %s", root / "output" / "failure")
    return code


def _read_hyperparameters(path: str | None) -> dict:
    if not path:
        return {}
    try:
        document = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"--hyperparameters {path}: not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise ValueError(f"--hyperparameters {path}: expected a JSON object of name: value, "
                         f"got a {type(document).__name__}")
    return document


def stage_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="convlab stage-source",
                                     description="Write train.py + training/ + requirements.txt to a folder.")
    parser.add_argument("dest")
    args = parser.parse_args(argv)
    print(stage_source_dir(args.dest))
    return 0
