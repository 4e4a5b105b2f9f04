"""`convlab deploy <package|register|deploy|transform|cleanup>` (also scripts/deploy.py, scripts/transform.py).

    package    model_dir -> model.tar.gz (verified)
    register   upload model.tar.gz, CreateModel, register a model package (idempotent)
    deploy     all of the above, then endpoint -> batch transform -> local, first that works;
               --sandbox runs it against an embedded AWS that refuses endpoints like a lab account
    transform  batch transform of every object under an S3 prefix or folder (--local: in this process)
    cleanup    delete what a deploy created (from its result JSON), only where it created it

Every command prints one JSON document on stdout; an error is one line on stderr. Exit status:
0 done; 1 error or refusal, nothing (more) done; 2 bad command-line usage; 3 cleanup could not
delete some resources (one line each on stderr).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError

from deploy import aws
from deploy.errors import DeployError

log = logging.getLogger(__name__)

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="convlab deploy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("package", help="model_dir -> model.tar.gz")
    p.add_argument("--model-dir", type=Path, required=True)
    p.add_argument("--output", type=Path, help="archive path (default: next to the model_dir)")
    _common(p)

    p = sub.add_parser("register", help="upload, CreateModel, model package")
    _model_source(p)
    _aws_target(p)
    _common(p)

    p = sub.add_parser("deploy", help="endpoint -> batch transform -> local, first that works")
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
    _common(p)

    p = sub.add_parser("transform", help="batch transform of an S3 prefix or folder of images")
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
    _common(p)

    p = sub.add_parser("cleanup", help="delete what a deploy created")
    p.add_argument("--result", type=Path, required=True, help="the deploy result JSON")
    p.add_argument("--registry", action="store_true", help="also delete model packages/groups it created")
    p.add_argument("--storage", action="store_true", help="also delete the S3 objects and buckets it created")
    _common(p)
    for name, subparser in sub.choices.items():
        subparser.description = DESCRIPTIONS.get(name)
    return parser


def _run_name(args: argparse.Namespace) -> str:
    return args.name or aws.resource_name("convlab")


def cmd_package(args: argparse.Namespace) -> dict[str, Any]:
    from deploy.package import build_archive, verify_archive
    archive = build_archive(args.model_dir, args.output)
    return {"archive": str(archive), "bytes": archive.stat().st_size, "members": verify_archive(archive)}


def _archive(args: argparse.Namespace, work: Path) -> Path:
    from deploy.package import build_archive, verify_archive
    if args.archive:
        verify_archive(args.archive)
        return Path(args.archive)
    return build_archive(args.model_dir, work / "model.tar.gz")


def _require_role(args: argparse.Namespace) -> str:
    if not args.role:
        raise DeployError("--role is required: the SageMaker execution role ARN "
                          "(in AWS Academy / Learner Lab: arn:aws:iam::<account>:role/LabRole)")
    return str(args.role)


def cmd_register(args: argparse.Namespace) -> dict[str, Any]:
    from deploy import register
    name = _run_name(args)
    role = _require_role(args)
    archive = _archive(args, Path("work/deploy") / name)
    sm, s3 = aws.client("sagemaker", args.region), aws.client("s3", args.region)
    region = aws.region_of(sm)
    dest = aws.S3Uri(args.bucket, args.prefix).child(name)
    model_uri, metrics_uri, created = register.upload_archive(s3, archive, dest, args.create_bucket, region)
    tf_version = register.archive_json(archive, "config.json").get("versions", {}).get("tensorflow")
    image, _ = register.resolve_image_uri(args.image_uri, region, tf_version, args.instance_type)
    result = register.register(sm, archive=archive, model_name=args.model_name or name, image_uri=image,
                               model_data_url=str(model_uri), metrics_uri=str(metrics_uri), role_arn=role,
                               group=args.group or None, approval=args.approval, instance_type=args.instance_type)
    result.created = created + result.created
    return result.as_dict()


def _options_given(args: argparse.Namespace) -> dict[str, Any]:
    """DeployOptions fields from the arguments; None where the user gave nothing."""
    return dict(
        image_uri=args.image_uri, output=aws.S3Uri.parse(args.output, "--output").as_prefix() if args.output else None,
        model_name=args.model_name, package_group=args.group or None, approval=args.approval,
        instance_type=args.instance_type, endpoint_timeout_s=args.endpoint_timeout,
        transform_timeout_s=args.transform_timeout, poll_s=args.poll,
        steps=tuple(s.strip() for s in args.steps.split(",") if s.strip()), work_dir=args.work_dir,
        region=args.region, batch_size=args.batch_size, workers=args.workers, progress=not args.no_progress,
        result_path=args.result)


def deploy_options(args: argparse.Namespace, name: str) -> Any:
    """DeployOptions for a deploy against AWS (or whatever AWS_ENDPOINT_URL points at)."""
    from deploy.options import DeployOptions
    if not args.bucket:
        raise DeployError("--bucket is required (the S3 bucket for the archive and predictions), unless --sandbox")
    given = {k: v for k, v in _options_given(args).items() if v is not None}
    return DeployOptions(name=name, artifacts=aws.S3Uri(args.bucket, args.prefix).child(name),
                         role_arn=_require_role(args), model_dir=args.model_dir, archive=args.archive,
                         input=args.input, create_bucket=args.create_bucket, **given)


def cmd_deploy(args: argparse.Namespace) -> dict[str, Any]:
    from deploy.fallback import deploy, summary_line
    name = _run_name(args)
    if args.sandbox:
        from deploy.sandbox_run import SANDBOX_BUCKET, deploy_in_sandbox, sandbox_options
        given = _options_given(args)
        given.update(artifacts=aws.S3Uri(args.bucket or SANDBOX_BUCKET, args.prefix).child(name),
                     role_arn=args.role)
        opts = sandbox_options(name, model_dir=args.model_dir, archive=args.archive, input=args.input, **given)
        result = deploy_in_sandbox(opts, [a.strip() for a in (args.sandbox_deny or "").split(",") if a.strip()])
    else:
        result = deploy(deploy_options(args, name))
    log.info("%s; result: %s", summary_line(result), result["result_path"])
    return result


def cmd_transform(args: argparse.Namespace) -> dict[str, Any]:
    from deploy.stores import open_store
    if not args.local:
        from deploy import steps
        if not (aws.is_s3(args.input) and aws.is_s3(args.output) and args.model_name):
            raise DeployError("a SageMaker transform job needs s3:// --input and --output and --model-name "
                              "(or pass --local to run the handler here)")
        return steps.transform_job_step(
            aws.client("sagemaker", args.region), aws.client("s3", args.region),
            job_name=args.job_name or aws.resource_name(args.model_name[:40], "tj"),
            model_name=args.model_name, input_uri=aws.S3Uri.parse(args.input, "--input"),
            output_uri=aws.S3Uri.parse(args.output, "--output").as_prefix(),
            instance_type=args.instance_type, timeout_s=args.timeout, poll_s=args.poll, created=[],
            timeout_flag="--timeout")
    from deploy.package import extract_archive
    from deploy.transform import Endpoint, Handler, TransformOptions, run_transform
    options = TransformOptions(split_type=args.split_type, batch_strategy=args.batch_strategy,
                               assemble_with=args.assemble_with, max_payload_mb=args.max_payload_mb,
                               max_concurrent_transforms=args.max_concurrent_transforms,
                               content_type=args.content_type, accept=args.accept)
    if args.endpoint_url:
        handler = Endpoint(args.endpoint_url)
    elif args.model_dir or args.archive:
        model_dir = args.model_dir or extract_archive(args.archive, Path("work/deploy") / "transform-model",
                                                           clean=True)
        handler = Handler(model_dir, accept=args.accept)
    else:
        raise DeployError("transform --local needs --model-dir, --archive or --endpoint-url")
    s3 = aws.client("s3", args.region, max_pool=max(10, args.workers * 2))
    summary = run_transform(open_store(args.input, s3), open_store(args.output, s3), handler,
                            batch_size=args.batch_size, workers=args.workers, progress=not args.no_progress,
                            options=options)
    data = summary.as_dict()
    if args.summary:
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        args.summary.write_text(json.dumps(data, indent=2))
    if summary.failed:
        print(json.dumps(data, indent=2, default=str))
        raise DeployError(f"{summary.failed} of {summary.inputs} objects failed ({summary.written} written, "
                          f"{summary.skipped} skipped); the summary lists each failure")
    return data


def cmd_cleanup(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    from deploy.cleanup import cleanup
    report, failed, status = cleanup(args.result, registry=args.registry, storage=args.storage,
                                     region_flag=args.region)
    for line in failed:
        print(f"convlab deploy cleanup: {line}", file=sys.stderr)
    return report, status


COMMANDS = {"package": cmd_package, "register": cmd_register, "deploy": cmd_deploy,
            "transform": cmd_transform, "cleanup": cmd_cleanup}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("botocore", "boto3", "urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        output = COMMANDS[args.command](args)
    except (DeployError, BotoCoreError) as exc:
        print(f"convlab deploy {args.command}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    output, status = output if isinstance(output, tuple) else (output, 0)
    print(json.dumps(output, indent=2, default=str))
    return status


if __name__ == "__main__":
    sys.exit(main())
