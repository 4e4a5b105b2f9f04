"""`convlab train`: the training entry point on this machine, with /opt/ml emulated under a folder.

Arguments, hyperparameters and channel paths are checked before TensorFlow is imported, so a
mistake is answered at once, in one line.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from pathlib import Path

from training.environment import parse_cli_hyperparameters
from training.local import prepare_opt_ml, stage_source_dir

log = logging.getLogger("convlab.train")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convlab train", allow_abbrev=False,
        description="Train through the SageMaker entry point. With --local (implied by --train or --test) "
                    "/opt/ml is emulated under --work-dir; without, it reads /opt/ml (or CONVLAB_OPT_ML) "
                    "like the container's `train` program.",
        epilog="Any other --name value pair is a hyperparameter (--model cnn --epochs 3 ...; "
               "python -m training.train --help lists them with their types and defaults).")
    parser.add_argument("--local", action="store_true",
                        help="emulate /opt/ml under --work-dir (implied by --train or --test)")
    parser.add_argument("--work-dir", default="work/train", help="folder for the emulated /opt/ml tree "
                                                                 "(default: %(default)s)")
    parser.add_argument("--train", help="train channel: a local folder/file or s3://bucket/prefix")
    parser.add_argument("--test", help="optional test channel: a local folder/file or s3://bucket/prefix")
    parser.add_argument("--hyperparameters", help="JSON file of hyperparameters")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the checkpoint a previous run left in <work-dir>/opt_ml/checkpoints "
                             "(default: start fresh and remove it)")
    return parser


def main(argv: list[str]) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if not (args.local or args.train or args.test):
        from training.environment import opt_ml_root

        data = opt_ml_root() / "input" / "data"
        if not data.is_dir() and not any(k.startswith("SM_CHANNEL_") for k in os.environ) and "-h" not in rest \
                and "--help" not in rest:
            print(f"convlab train: no --train given and {data} does not exist; to train on this machine: "
                  "convlab train --local --train DATA_DIR", file=sys.stderr)
            return 2
        from training import train as entry  # TensorFlow loads here

        return entry.main(rest)
    if not args.train:
        parser.error("--local needs --train (a folder, a file or an s3:// prefix)")
    _configure_logging()
    channels = {"train": args.train, **({"test": args.test} if args.test else {})}
    try:
        hyperparameters = _read_hyperparameters(args.hyperparameters)
        hyperparameters.update(parse_cli_hyperparameters(rest))
        _check_hyperparameters(hyperparameters)
        for name, source in channels.items():
            _check_channel(name, source)
        root = prepare_opt_ml(args.work_dir, channels, hyperparameters)
    except Exception as exc:  # a bad path, file, S3 prefix or hyperparameter: one line, no traceback
        print(f"convlab train: {exc}", file=sys.stderr)
        return 2
    if not args.local:
        log.info("--train given: training locally with /opt/ml emulated under %s (as with --local)", args.work_dir)
    _fresh_or_resume(root / "checkpoints", args.resume)
    from training import train as entry  # TensorFlow loads here

    code = entry.main([], root=root)
    if code == 0:
        log.info("artifacts in %s, metrics in %s", root / "model", root / "model" / "metrics.json")
    else:
        log.error("failure file: %s", root / "output" / "failure")
    return code


def _configure_logging() -> None:
    """The entry point's log format, set up now so the checks before TensorFlow loads log alike."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                            stream=sys.stderr)


def _check_hyperparameters(hyperparameters: dict) -> None:
    from training.hyperparameters import parse_hyperparameters

    parse_hyperparameters(hyperparameters)


def _check_channel(name: str, source: str) -> None:
    """A local channel must exist and hold data a reader recognises; the error names the user's path."""
    if str(source).startswith("s3://"):
        return
    from training.data import DataError, detect

    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"--{name} {source}: no such file or directory")
    try:
        layout = detect(path)
    except DataError as exc:
        raise DataError(f"--{name} {source}: {exc}") from None
    if name == "train" and "train" not in layout.splits and not layout.single_file:
        raise DataError(f"--train {source}: holds only {', '.join(sorted(layout.splits))} data; "
                        "expected training data")


def _fresh_or_resume(checkpoints: Path, resume: bool) -> None:
    """Start from scratch unless asked to resume: a finished run's checkpoint would train 0 epochs."""
    held = checkpoints.is_dir() and any(checkpoints.iterdir())
    if resume:
        log.info("--resume: continuing from %s" if held else "--resume: no checkpoint in %s, starting fresh",
                 checkpoints)
        return
    if held:
        shutil.rmtree(checkpoints)
        checkpoints.mkdir(parents=True)
        log.info("starting fresh: removed the previous checkpoint in %s (--resume continues from it)", checkpoints)


def _read_hyperparameters(path: str | None) -> dict:
    if not path:
        return {}
    try:
        document = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"--hyperparameters {path}: cannot read it ({exc.strerror or exc})") from None
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
