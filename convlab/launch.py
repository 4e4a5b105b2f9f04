"""`convlab launch`: upload a data set to S3 and run the training entry point as a SageMaker
training job with SDK v3 (`sagemaker.train.ModelTrainer`).

    convlab launch --role ARN [--data DIR|s3://PREFIX] [--model cnn] [--epochs 5 ...]
    convlab launch --local-container [--data DIR] ...     (LOCAL_CONTAINER mode: needs Docker)
    convlab launch --sandbox [--dry-run] [--data DIR] ...  (an embedded AWS: no account needed)

1. data: a local folder in any format the readers accept (default: Fashion-MNIST's IDX files) goes
   to s3://BUCKET/PREFIX/train/ and .../test/ with a progress bar; unchanged files are skipped.
2. the job: the staged source dir (train.py + training/ + requirements.txt, no convlab needed),
   AWS's TensorFlow training image for the region (or --image-uri), instance type and count
   (more than one: the entry point trains with MultiWorkerMirroredStrategy across SM_HOSTS),
   channels train/test, the model config as hyperparameters, metric definitions for the entry
   point's `convlab-metrics` line, managed spot training with a checkpoint S3 URI and max wait.
3. it waits (optionally streaming the logs), prints metrics.json and the model.tar.gz URI that
   `convlab deploy` takes.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from convlab.launch_job import (LOCAL_IMAGE, LaunchConfig, LaunchResult, Submission, finish,
                                job_hyperparameters, launch, submit)
from convlab.s3data import upload_dataset
from convlab.sagemaker_setup import ROLE_ENV, LaunchError, resolve_role, sagemaker_session
from convlab.sdk_local import quiet_sdk_logging
from training.data import DataError

# The Python API the notebook and scripts use, next to the command line.
__all__ = ["LOCAL_IMAGE", "LaunchConfig", "LaunchError", "LaunchResult", "Submission", "build_parser", "finish",
           "job_hyperparameters", "launch", "main", "resolve_role", "sagemaker_session", "submit", "upload_dataset"]


# -- command line --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="convlab launch", allow_abbrev=False, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Any other --name value pair is a hyperparameter (--model mlp, --epochs 10, "
                                       "--filters 64 ...; python -m training.train --help lists them).")
    p.add_argument("--data", help="local data folder or s3:// prefix holding train/ (default: Fashion-MNIST)")
    p.add_argument("--bucket", help="S3 bucket (default: sagemaker-<region>-<account>)")
    p.add_argument("--prefix", help="key prefix for the uploaded data (default: convlab/data/<folder>-<content "
                                    "digest>, one per data set)")
    p.add_argument("--role", help=f"execution role ARN (default: ${ROLE_ENV}, then the caller's role)")
    p.add_argument("--region", help="AWS region (default: the usual AWS configuration)")
    p.add_argument("--hyperparameters", type=Path, help="JSON file of hyperparameters")
    p.add_argument("--job-name", help="base job name (default: convlab-<model>)")
    p.add_argument("--instance-type", default="ml.m5.xlarge")
    p.add_argument("--instance-count", type=int, default=1, help="> 1: multi-worker training")
    p.add_argument("--image-uri", help="training image (default: AWS's TensorFlow training image; "
                                       f"--local-container: {LOCAL_IMAGE})")
    p.add_argument("--framework-version", help="TensorFlow version of AWS's image (default: the installed one)")
    p.add_argument("--on-demand", action="store_true", help="no managed spot training")
    p.add_argument("--max-run", type=int, default=3600, help="max training seconds")
    p.add_argument("--max-wait", type=int, default=7200, help="max seconds including waiting for spot capacity")
    p.add_argument("--checkpoint-uri", help="s3:// URI for spot checkpoints (default: per job)")
    p.add_argument("--output-path", help="s3:// prefix for model.tar.gz (default: s3://BUCKET/convlab/output/)")
    p.add_argument("--no-wait", action="store_true", help="create the job and return")
    p.add_argument("--dry-run", action="store_true", help="check the request and list what would be uploaded; "
                                                          "nothing is written to AWS")
    p.add_argument("--logs", action="store_true", help="stream the job's logs while waiting")
    p.add_argument("--local-container", action="store_true", help="ModelTrainer LOCAL_CONTAINER mode (Docker)")
    p.add_argument("--sandbox", action="store_true",
                   help="against an embedded AWS on this machine (no account): the whole plan, the upload and "
                        "the job record, offline; the job trains nothing")
    p.add_argument("--work-dir", type=Path, default=Path("work/launch"))
    p.add_argument("--no-progress", action="store_true", help="no upload progress bar")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from training.environment import parse_cli_hyperparameters

    args, rest = build_parser().parse_known_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("botocore", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    quiet_sdk_logging(args.verbose)
    try:
        raw = json.loads(args.hyperparameters.read_text()) if args.hyperparameters else {}
        if not isinstance(raw, dict):
            raise LaunchError(f"--hyperparameters {args.hyperparameters}: a JSON {type(raw).__name__}; expected "
                              "an object of hyperparameter names and values, like {\"epochs\": 5}")
        raw.update(parse_cli_hyperparameters(rest))
        cfg = LaunchConfig(
            hyperparameters=raw, base_job_name=args.job_name, data=args.data, bucket=args.bucket,
            prefix=args.prefix, role=args.role, region=args.region, image_uri=args.image_uri,
            framework_version=args.framework_version, instance_type=args.instance_type,
            instance_count=args.instance_count, spot=not args.on_demand, max_run_s=args.max_run,
            max_wait_s=args.max_wait, checkpoint_uri=args.checkpoint_uri, output_path=args.output_path,
            local_container=args.local_container, dry_run=args.dry_run, work_dir=args.work_dir,
            progress=not args.no_progress)
        if args.sandbox and args.local_container:
            raise LaunchError("--sandbox and --local-container: choose one (the sandbox emulates AWS, "
                              "--local-container runs the image with Docker)")
        if args.sandbox:
            from convlab.launch_sandbox import launch_in_sandbox
            document = launch_in_sandbox(cfg, logs=args.logs, wait=not args.no_wait)
        else:
            document = launch(cfg, logs=args.logs, wait=not args.no_wait).as_dict()
    except (LaunchError, DataError, ValueError, OSError, BotoCoreError, ClientError) as exc:
        print(f"convlab launch: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    print(json.dumps(document, indent=2, default=str))
    return 0
