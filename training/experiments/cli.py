"""run_study: run built-in or custom studies locally (sequentially) or as SageMaker jobs (in parallel)."""
from __future__ import annotations

import argparse
import logging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The quick version `make demo` runs: the same studies with fewer seeds, epochs and images, smaller
# batches, and batch norm off (in a few hundred steps its running statistics do not settle, and the
# CNN would score below the MLP for that reason alone).
DEMO = {"seeds": 2, "set": {"epochs": 2, "max_train_samples": 3000, "max_test_samples": 1000, "batch_size": 32,
                            "batch_norm": "false"}}


def parse_args(argv: list[str] | None = None, prog: str = "run_study") -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog, description="Train every (setting, seed) of one-factor studies and record each run.")
    parser.add_argument("studies", nargs="*", help="built-in study names or spec files (.json/.yaml)")
    parser.add_argument("--all", action="store_true", help="every built-in study")
    parser.add_argument("--list", action="store_true", help="list the built-in studies and exit")
    parser.add_argument("--runs", default="runs/studies", help="runs folder (records/, models/, studies/); "
                                                               "default runs/studies")
    parser.add_argument("--train", help="training channel: a local folder, or s3:// with --sagemaker "
                                        "(default: the installed Fashion-MNIST)")
    parser.add_argument("--test", help="test channel (default: the test files in the training channel)")
    parser.add_argument("--seeds", type=int, help="seeds per configuration (default: the spec's, 3 built in)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="change a base hyperparameter for every setting, e.g. --set epochs=20")
    parser.add_argument("--demo", action="store_true",
                        help=f"quick version: {DEMO['seeds']} seeds, " +
                             ", ".join(f"{k}={v}" for k, v in DEMO["set"].items()))
    parser.add_argument("--workers", type=int, default=1,
                        help="local runs trained at once, each process pinned to its own CPU core (default 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    cloud = parser.add_argument_group("SageMaker (one training job per configuration and seed)")
    cloud.add_argument("--sagemaker", action="store_true", help="launch SageMaker training jobs in parallel")
    cloud.add_argument("--local-container", action="store_true",
                       help="run each job here, one after another, in a container of --image (default "
                            "convlab:latest): SDK ModelTrainer LOCAL_CONTAINER mode, local channel folders "
                            "(needs Docker)")
    cloud.add_argument("--tune", action="store_true",
                       help="with --sagemaker: one hyperparameter tuning job per study instead, Grid search over "
                            "its factor and seeds, objective validation:accuracy")
    cloud.add_argument("--role", help="execution role ARN for the jobs")
    cloud.add_argument("--image", help="training image URI (e.g. AWS's TensorFlow 2.x CPU training image)")
    cloud.add_argument("--instance-type", default="ml.m5.xlarge")
    cloud.add_argument("--output-path", help="s3://bucket/prefix for the jobs' model artifacts")
    cloud.add_argument("--max-parallel", type=int,
                       help="SageMaker jobs running at once (default 8; local containers run one at a time)")
    cloud.add_argument("--region")
    return parser.parse_args(argv)


def _overrides(pairs: list[str]) -> dict:
    """--set KEY=VALUE pairs, each checked as a hyperparameter so a mistake names --set, not a study."""
    from ..hyperparameters import parse_hyperparameters
    from ..models.config import ConfigError
    from .spec import StudyError

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise StudyError(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            parse_hyperparameters({key.strip(): value.strip()})
        except ConfigError as exc:
            raise StudyError(f"--set {pair}: {exc}") from None
        out[key.strip()] = value.strip()
    return out


def select_studies(args: argparse.Namespace):
    from .spec import StudyError, builtin_names, resolve_study

    names = builtin_names() if args.all else args.studies
    if not names:
        raise StudyError(f"name studies to run, or --all; built-in: {', '.join(builtin_names())}")
    seeds = args.seeds or (DEMO["seeds"] if args.demo else None)
    shared = {**(DEMO["set"] if args.demo else {}), **_overrides(args.set)}
    studies = []
    for name in names:
        study = resolve_study(name)
        studies.append(study.with_changes(seeds=list(range(seeds)) if seeds else None, base_overrides=shared))
    return studies


def list_studies() -> None:
    from .spec import builtin_names, resolve_study

    for name in builtin_names():
        study = resolve_study(name)
        print(f"{name:<12} factor {study.factor:<12} settings: {', '.join(s.label for s in study.settings)}"
              f"  ({len(study.seeds)} seeds)")


def run_jobs(args: argparse.Namespace, studies: list, channels: dict) -> dict | None:
    """The studies as training jobs: in local containers, on SageMaker, or as tuning jobs (None: launched)."""
    from .spec import StudyError

    if args.local_container:
        from .container_runner import LocalContainerSettings, run_local_container

        return run_local_container(studies, channels, args.runs,
                                   LocalContainerSettings(training_image=args.image or "convlab:latest"))
    from .sagemaker_runner import SageMakerSettings, run_sagemaker

    if not args.role or not args.image:
        raise StudyError("--sagemaker needs --role (execution role ARN) and --image (training image URI)")
    settings = SageMakerSettings(role=args.role, training_image=args.image, instance_type=args.instance_type,
                                 output_path=args.output_path, max_parallel=args.max_parallel or 8,
                                 region=args.region)
    if args.tune:
        from .tuning import launch_tuning

        for study in studies:
            print(f"{study.name}: tuning job {launch_tuning(study, channels, settings)}")
        return None
    return run_sagemaker(studies, channels, args.runs, settings)


def convlab_main(argv: list[str] | None = None) -> int:
    return main(argv, prog="convlab study")


def main(argv: list[str] | None = None, prog: str = "run_study") -> int:
    args = parse_args(argv, prog)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("convlab.train", "convlab.metrics", "training.data.channels"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # One model after another in one process: TensorFlow's retracing notices say nothing useful here.
    for noisy in ("tensorflow", "absl"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    from ..data import DataError, find_fashion_mnist
    from .records import RecordError
    from .runner import StudyRunError, run_local
    from .spec import StudyError

    if args.list:
        list_studies()
        return 0
    try:
        studies = select_studies(args)
        train = args.train or (str(find_fashion_mnist()) if find_fashion_mnist() else None)
        if not train:
            raise StudyError("no --train channel given and Fashion-MNIST is not installed "
                             "(scripts/get_fashion_mnist.sh installs it)")
        channels = {"train": train, **({"test": args.test} if args.test else {})}
        if args.local_container or args.sagemaker:
            summary = run_jobs(args, studies, channels)
            if summary is None:
                return 0
        else:
            summary = run_local(studies, channels, args.runs, progress=not args.no_progress, workers=args.workers)
    except (StudyError, StudyRunError, RecordError, DataError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    print(f"{len(summary['trained'])} runs trained, {len(summary['skipped'])} already recorded; "
          f"records in {os.path.join(args.runs, 'records')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
