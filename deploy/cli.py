"""`convlab deploy <package|register|deploy|transform|cleanup>` (also scripts/deploy.py, scripts/transform.py).

    package    model_dir -> model.tar.gz (verified)
    register   upload model.tar.gz, CreateModel, register a model package (idempotent)
    deploy     all of the above, then endpoint -> batch transform -> local, first that works;
               --sandbox runs it against an embedded AWS that refuses endpoints like a lab account
    transform  batch transform of every object under an S3 prefix or folder (--local: in this process)
    cleanup    delete what a deploy created (from its result JSON), only where it created it

Every command prints one JSON document on stdout; an error is one line on stderr. Exit status:
0 done; 1 error or refusal, nothing (more) done; 2 bad command-line usage; 3 partly done: deploy
served but some inputs failed (its summary line says how many), or cleanup could not delete some
resources (one line each on stderr).
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
from deploy.cli_parser import build_parser
from deploy.errors import DeployError

log = logging.getLogger(__name__)
EXIT_PARTIAL = 3

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
    failed = (result.get("predictions") or {}).get("summary", {}).get("failed", 0)
    if failed:
        print(f"convlab deploy deploy: {summary_line(result)}", file=sys.stderr)
    return result, EXIT_PARTIAL if failed else 0


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
    if report.get("nothing_remains"):
        print(f"convlab deploy cleanup: {report['nothing_remains']}", file=sys.stderr)
    return report, status


COMMANDS = {"package": cmd_package, "register": cmd_register, "deploy": cmd_deploy,
            "transform": cmd_transform, "cleanup": cmd_cleanup}


def main(argv: list[str] | None = None) -> int:
    args = build_parser(__doc__).parse_args(argv)
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
