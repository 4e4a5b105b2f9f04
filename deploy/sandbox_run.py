"""`deploy --sandbox`: the deploy chain against an embedded AWS that refuses like a lab account.

The sandbox starts empty, so --input must be a local folder (it is uploaded like any local
input). Predictions that land in the sandbox's S3 are copied to <work-dir>/<name>/predictions/
before the sandbox stops, and scored when the inputs sit in one folder per class.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

from deploy import aws
from deploy.errors import SandboxError
from deploy.sandbox import start_sandbox
from deploy.score import score_outputs
from deploy.stores import LocalStore, S3Store

log = logging.getLogger(__name__)

SANDBOX_BUCKET = "convlab-sandbox"
LAB_ROLE = "arn:aws:iam::123456789012:role/LabRole"


def _copy_predictions(result: dict[str, Any], dest: Path) -> tuple[Path, list[tuple[str, bytes]]] | None:
    """Copy the `.out` objects of a sandbox run to `dest`; return (folder, [(key, body)])."""
    uri = (result.get("predictions") or {}).get("s3_uri")
    if not uri:
        return None
    source = S3Store(aws.S3Uri.parse(uri).as_prefix())
    local = LocalStore(dest)
    pairs = []
    for item in source.items():
        body = source.read(item.relative)
        local.write(item.relative, body, "application/json")
        if item.relative.endswith(".out"):
            pairs.append((item.relative[:-len(".out")], body))
    return dest, pairs


def deploy_in_sandbox(args: argparse.Namespace, name: str) -> dict[str, Any]:
    from deploy.cli import deploy_options
    from deploy.fallback import deploy
    from deploy.register import archive_json

    if args.input and aws.is_s3(args.input):
        raise SandboxError("the sandbox's S3 starts empty: give --input as a local folder of images")
    sandbox = start_sandbox(region=args.region or "us-east-1")
    saved = {key: os.environ.get(key) for key in sandbox.environ()}
    os.environ.update(sandbox.environ())
    try:
        denied = [a.strip() for a in (args.sandbox_deny or "").split(",") if a.strip()]
        if denied:
            sandbox.deny(*denied)
        args.bucket = args.bucket or SANDBOX_BUCKET
        args.create_bucket = True
        args.role = args.role or LAB_ROLE
        args.poll = min(args.poll, 1.0)
        opts = deploy_options(args, name)
        result = deploy(opts)
        result["sandbox"] = {"endpoint_url": sandbox.endpoint_url, "denied": sandbox.denied()}
        copied = _copy_predictions(result, opts.work_dir / name / "predictions")
        if copied is not None:
            folder, pairs = copied
            result["predictions"]["copied_to"] = str(folder)
            archive = Path(result["archive"]["path"])
            classes = archive_json(archive, "config.json").get("classes") or archive_json(
                archive, "metrics.json").get("classes", [])
            if pairs and classes:
                score = score_outputs(pairs, list(classes))
                if score.scored:
                    result["predictions"]["accuracy"] = score.accuracy
                    result["predictions"]["scored"] = score.scored
        Path(result["result_path"]).write_text(json.dumps(result, indent=2, default=str))
        return result
    finally:
        sandbox.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def sandbox_deploy(model_dir: str | Path, images: str | Path, *, name: str = "convlab-demo",
                   work_dir: str | Path = "work/deploy",
                   deny: tuple[str, ...] = ("CreateEndpointConfig", "CreateTransformJob"),
                   progress: bool = True) -> dict[str, Any]:
    """The deploy chain for a model_dir and a folder of images, against a fresh sandbox that
    refuses `deny`; returns the result (deploy.fallback.summary_line(result) says it in words)."""
    from deploy.cli import build_parser

    argv = ["deploy", "--sandbox", "--sandbox-deny", ",".join(deny), "--model-dir", str(model_dir),
            "--input", str(images), "--name", name, "--work-dir", str(work_dir)]
    args = build_parser().parse_args(argv + ([] if progress else ["--no-progress"]))
    return deploy_in_sandbox(args, name)
