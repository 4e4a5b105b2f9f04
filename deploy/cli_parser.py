"""The command line of `convlab deploy` (deploy/cli.py runs it): one subparser per command, the
options they share, and each command's own arguments."""
from __future__ import annotations

import argparse
from pathlib import Path

# `convlab deploy COMMAND --help` opens with these.
DESCRIPTIONS = {
    "package": "Write model.tar.gz from a model_dir (SavedModel in 1/, model.onnx, labels.json, config.json, "
               "metrics.json, code/) and check it member by member.",
    "register": "Upload model.tar.gz, call CreateModel and register a model package in a model package group; "
                "re-running with the same names creates nothing twice.",
    "deploy": "Package and register, then try a real-time endpoint, then batch transform, then local mode, "
              "stopping at the first that works; a refused step is cleaned up and the next one tried. "
              "--sandbox runs the chain against an embedded AWS that refuses like a lab account.",
    "transform": "Batch transform: every object under --input gets <key>.out under --output. With --local the "
                 "handler runs in this process (no SageMaker), concurrently and resumably.",
    "cleanup": "Delete what a deploy created, as listed in its result JSON.",
}

def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--region", help="AWS region (default: the boto3 default)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def _model_source(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--model-dir", type=Path, help="a model_dir written by training")
    group.add_argument("--archive", type=Path, help="an existing model.tar.gz")


def _aws_target(p: argparse.ArgumentParser, sandbox: bool = False) -> None:
    p.add_argument("--bucket", required=not sandbox, help="S3 bucket for the archive and predictions")
    p.add_argument("--prefix", default="convlab", help="key prefix in the bucket (default: convlab)")
    p.add_argument("--create-bucket", action="store_true", help="create the bucket when it is missing")
    p.add_argument("--name", help="run name; resource names derive from it (default: convlab-<UTC time>)")
    p.add_argument("--role", help="SageMaker execution role ARN (in a lab account: the LabRole ARN)")
    p.add_argument("--image-uri", help="serving image (convlab's image in ECR); default: AWS's "
                                       "TensorFlow Serving image for the model's TF version")
    p.add_argument("--model-name", help="SageMaker model name (default: the run name)")
    p.add_argument("--group", default="convlab",
                   help="Model Registry model package group, created if missing (default: convlab; '' skips)")
    p.add_argument("--approval", default="PendingManualApproval",
                   choices=["PendingManualApproval", "Approved", "Rejected"])
    p.add_argument("--instance-type", default="ml.m5.large")


def _transform_tuning(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=int, default=64, help="images per predict call")
    p.add_argument("--workers", type=int, default=8, help="concurrent S3 downloads/uploads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _package_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-dir", type=Path, required=True)
    p.add_argument("--output", type=Path, help="archive path (default: next to the model_dir)")


def _register_parser(p: argparse.ArgumentParser) -> None:
    _model_source(p)
    _aws_target(p)


def _deploy_parser(p: argparse.ArgumentParser) -> None:
    _model_source(p)
    _aws_target(p, sandbox=True)
    p.add_argument("--input", help="images to predict: an s3:// prefix or a local folder")
    p.add_argument("--output", help="s3:// prefix for predictions (default: <bucket>/<prefix>/<name>/predictions/)")
    p.add_argument("--steps", default=",".join(("endpoint", "transform", "local")),
                   help="ways to try, in order (default: endpoint,transform,local)")
    p.add_argument("--endpoint-timeout", type=float,
                   help="seconds to wait for InService (default 1800; 60 with --sandbox)")
    p.add_argument("--transform-timeout", type=float,
                   help="seconds to wait for the transform job (default 3600; 60 with --sandbox)")
    p.add_argument("--poll", type=float, help="seconds between status polls (default 30; 1 with --sandbox)")
    p.add_argument("--work-dir", type=Path, default=Path("work/deploy"))
    p.add_argument("--result", type=Path, help="result JSON path (default: <work-dir>/<name>/deploy-result.json)")
    p.add_argument("--sandbox", action="store_true",
                   help="run against an embedded AWS (moto) that refuses like a lab account")
    p.add_argument("--sandbox-deny", default="CreateEndpointConfig,CreateTransformJob",
                   help="operations the sandbox refuses, comma-separated (default: CreateEndpointConfig,"
                        "CreateTransformJob, so the run ends in local mode: the sandbox's transform jobs "
                        "write no outputs and would be reported as failed; '' for none)")
    _transform_tuning(p)


def _transform_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", required=True, help="s3:// prefix or local folder of inputs")
    p.add_argument("--output", required=True, help="s3:// prefix or local folder for <key>.out")
    p.add_argument("--local", action="store_true", help="no SageMaker: run the handler in this process, or "
                   "send the requests to --endpoint-url")
    p.add_argument("--endpoint-url", help="with --local: a running model server (http://HOST:PORT) to send the "
                   "requests to, as SageMaker drives a transform container")
    p.add_argument("--split-type", choices=["None", "Line"], default="None",
                   help="None: one object is one request; Line: one record per line (CSV, JSON Lines)")
    p.add_argument("--batch-strategy", choices=["SingleRecord", "MultiRecord"],
                   help="with --split-type Line: one record per request, or as many as fit in --max-payload-mb "
                        "(default: the server's /execution-parameters, else MultiRecord)")
    p.add_argument("--assemble-with", choices=["None", "Line"], default="None",
                   help="None: concatenate an object's responses; Line: a newline after each")
    p.add_argument("--max-payload-mb", type=float, help="largest request body (default: /execution-parameters, else 6)")
    p.add_argument("--max-concurrent-transforms", type=int,
                   help="requests in flight to --endpoint-url (default: /execution-parameters, else 1)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model-dir", type=Path, help="model_dir or extracted model.tar.gz (--local)")
    src.add_argument("--archive", type=Path, help="model.tar.gz (--local)")
    p.add_argument("--model-name", help="SageMaker model to run (without --local)")
    p.add_argument("--job-name", help="transform job name (without --local)")
    p.add_argument("--instance-type", default="ml.m5.large")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the job (default 3600)")
    p.add_argument("--poll", type=float, default=30.0, help="seconds between status polls (default 30)")
    p.add_argument("--content-type", help="content type for every object (default: from the extension)")
    p.add_argument("--accept", default="application/json")
    p.add_argument("--summary", type=Path, help="also write the summary JSON here")
    _transform_tuning(p)


def _cleanup_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--result", type=Path, required=True, help="the deploy result JSON")
    p.add_argument("--registry", action="store_true", help="also delete model packages/groups it created")
    p.add_argument("--storage", action="store_true", help="also delete the S3 objects and buckets it created")


# subcommand -> (help, the function adding its own arguments)
SUBCOMMANDS = {
    "package": ("model_dir -> model.tar.gz", _package_parser),
    "register": ("upload, CreateModel, model package", _register_parser),
    "deploy": ("endpoint -> batch transform -> local, first that works", _deploy_parser),
    "transform": ("batch transform of an S3 prefix or folder of images", _transform_parser),
    "cleanup": ("delete what a deploy created", _cleanup_parser),
}


def build_parser(description: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="convlab deploy", description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (summary, add_arguments) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=summary, description=DESCRIPTIONS.get(name))
        add_arguments(p)
        _common(p)
    return parser
