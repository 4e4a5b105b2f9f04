"""`convlab train`: the training entry point on this machine, with /opt/ml emulated under a folder.

Arguments, hyperparameters and channel paths are checked before TensorFlow is imported, so a
mistake is answered at once, in one line. Each local run is kept in its own folder (convlab.runs).
The hyperparameters not given are the lab's (training/studies/base.json: the base CNN, or with
--model mlp the baseline MLP, and their training recipe), except `epochs`.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from training.environment import parse_cli_hyperparameters
from training.local import prepare_tree, stage_source_dir

log = logging.getLogger("convlab.train")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convlab train", allow_abbrev=False,
        description="Train through the SageMaker entry point. With --local (implied by --train or --test) "
                    "/opt/ml is emulated under --work-dir; without, it reads /opt/ml (or CONVLAB_OPT_ML) "
                    "like the container's `train` program.",
        epilog="Any other --name value pair is a hyperparameter (--model cnn --epochs 3 ...; "
               "python -m training.train --help lists them with the entry point's defaults). With --local, "
               "those not given are the lab's (training/studies/base.json): " + _lab_defaults_text() +
               "; epochs as the entry point (5, more on small data). Each run is kept in "
               "<work-dir>/runs/<run id>/, <work-dir>/latest points at the newest finished one; "
               "convlab runs lists them.")
    parser.add_argument("--local", action="store_true",
                        help="emulate /opt/ml under --work-dir (implied by --train or --test)")
    parser.add_argument("--work-dir", default="work/train", help="folder holding the runs, each an emulated "
                                                                 "/opt/ml tree (default: %(default)s)")
    parser.add_argument("--train", help="train channel: a local folder/file or s3://bucket/prefix")
    parser.add_argument("--test", help="optional test channel: a local folder/file or s3://bucket/prefix")
    parser.add_argument("--hyperparameters", help="JSON file of hyperparameters")
    parser.add_argument("--resume", action="store_true",
                        help="continue the newest run in <work-dir>/runs from its checkpoint, in its own folder "
                             "(default: a new run in a new folder)")
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
        given = _read_hyperparameters(args.hyperparameters)
        given.update(parse_cli_hyperparameters(rest))
        hyperparameters = with_lab_defaults(given)
        config = _check_hyperparameters(hyperparameters)
        for name, source in channels.items():
            _check_channel(name, source)
        _check_model_fits(config, channels["train"], hyperparameters)
        run = _run_folder(args.work_dir, hyperparameters, channels, args.resume)
        root = prepare_tree(run, channels, hyperparameters)
    except Exception as exc:  # a bad path, file, S3 prefix or hyperparameter: one line, no traceback
        print(f"convlab train: {exc}", file=sys.stderr)
        return 2
    if not args.local:
        log.info("--train given: training locally with /opt/ml emulated in %s (as with --local)", root)
    from training import train as entry  # TensorFlow loads here

    code = entry.main([], root=root)
    if code != 0:
        log.error("failure file: %s", root / "output" / "failure")
        return code
    _finish(args.work_dir, root)
    return code


def _lab_defaults_text() -> str:
    lab = lab_defaults("cnn")
    return ", ".join(f"{k} {v}" for k, v in sorted(lab.items())) or "the entry point's"


def lab_defaults(model: str) -> dict[str, str]:
    """The lab's hyperparameters (training/studies/base.json) that differ from the entry point's
    defaults, for `model`; `epochs` stays the entry point's."""
    from training.experiments.records import canonical_hyperparameters
    from training.experiments.spec import BASE_FILE, STUDIES_DIR

    base = json.loads((STUDIES_DIR / BASE_FILE).read_text())["hyperparameters"]
    base = {k: v for k, v in base.items() if k != "epochs"}
    plain = canonical_hyperparameters({"model": model})
    lab = canonical_hyperparameters({**base, "model": model})
    return {k: v for k, v in lab.items() if plain.get(k) != v}


def with_lab_defaults(given: dict) -> dict:
    """The hyperparameters given, and the lab's for the others (logged once, so the run says what it is)."""
    model = str(given.get("model", "cnn")).strip()
    if model not in ("cnn", "mlp"):
        return dict(given)  # the parse that follows names the wrong value
    filled = {k: v for k, v in lab_defaults(model).items() if k not in given}
    if filled:
        log.info("the lab's %s (training/studies/base.json) for what was not given: %s",
                 "base CNN" if model == "cnn" else "baseline MLP", ", ".join(f"{k}={v}" for k, v in filled.items()))
    return {**given, **filled}


def _run_folder(work_dir: str, hyperparameters: dict, channels: dict, resume: bool) -> Path:
    from convlab.runs import new_run, newest_run

    if resume:
        run = newest_run(work_dir)
        if run is not None:
            log.info("--resume: continuing run %s from its checkpoint", run)
            return run
        log.info("--resume: no run in %s yet, starting a new one", Path(work_dir).resolve())
    run = new_run(work_dir, hyperparameters, channels)
    log.info("run %s: training in %s (--resume continues the newest run)", run.name, run)
    return run


def _finish(work_dir: str, root: Path) -> None:
    """After a run that finished: its figures, the latest pointer, and a short summary."""
    from convlab.run_figures import write_run_figures
    from convlab.runs import mark_latest, summary_lines

    try:
        write_run_figures(root / "model" / "metrics.json", root / "figures")
    except Exception as exc:  # a figure is never worth failing a finished run
        log.warning("could not write the run's figures: %s", exc)
    latest = mark_latest(work_dir, root)
    shown = latest / "model"
    try:
        shown = shown.relative_to(Path.cwd())
    except ValueError:
        pass
    for line in summary_lines(root, str(shown)):
        print(line, flush=True)


def _configure_logging() -> None:
    """The entry point's log format, set up now so the checks before TensorFlow loads log alike."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                            stream=sys.stderr)


def _check_hyperparameters(hyperparameters: dict):
    from training.hyperparameters import parse_hyperparameters

    return parse_hyperparameters(hyperparameters)[1]


def _check_model_fits(config, source: str, hyperparameters: dict) -> None:
    """A model too deep for the images (--depth 9 on 28x28) is refused now, from the files' headers."""
    if str(source).startswith("s3://"):
        return
    from training.data.channels import peek_shape
    from training.hyperparameters import parse_image_size

    shape = peek_shape(source, parse_image_size(hyperparameters.get("image_size", "")))
    if shape:
        config.input_shape = shape
        try:
            config.validate()
        except ValueError as exc:
            raise ValueError(f"{exc} (the images of --train {source} are {'x'.join(map(str, shape))})") from None


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
