"""`deploy --sandbox`: the deploy chain against an embedded AWS that refuses like a lab account.

The sandbox starts empty, so --input must be a local folder (it is uploaded like any local
input). This module receives ready DeployOptions (deploy.cli builds them from its arguments). Predictions that land in the sandbox's S3 are copied to <work-dir>/<name>/predictions/
before the sandbox stops, and scored when the inputs sit in one folder per class.
"""
from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from deploy import aws
from deploy.errors import SandboxError
from deploy.fallback import deploy
from deploy.options import DeployOptions
from deploy.register import archive_json
from deploy.sandbox import DUMMY_CREDENTIALS, start_sandbox
from deploy.score import score_outputs
from deploy.stores import LocalStore, S3Store

log = logging.getLogger(__name__)

SANDBOX_BUCKET = "convlab-sandbox"
LAB_ROLE = "arn:aws:iam::123456789012:role/LabRole"
# moto's endpoints and jobs are ready at once: a sandbox run never needs to wait long.
SANDBOX_ENDPOINT_TIMEOUT_S = 60.0
SANDBOX_TRANSFORM_TIMEOUT_S = 60.0
SANDBOX_POLL_S = 1.0


def _copy_predictions(result: dict[str, Any], dest: Path, s3: Any) -> tuple[Path, list[tuple[str, bytes]]] | None:
    """Copy the `.out` objects of a sandbox run to `dest`; return (folder, [(key, body)])."""
    uri = (result.get("predictions") or {}).get("s3_uri")
    if not uri:
        return None
    source = S3Store(aws.S3Uri.parse(uri).as_prefix(), s3)
    local = LocalStore(dest)
    pairs = []
    for item in source.items():
        body = source.read(item.relative)
        local.write(item.relative, body, "application/json")
        if item.relative.endswith(".out"):
            pairs.append((item.relative[:-len(".out")], body))
    return dest, pairs


def sandbox_options(name: str, *, model_dir: str | Path | None = None, archive: str | Path | None = None,
                    input: str | None = None, **given: Any) -> DeployOptions:
    """DeployOptions for a sandbox run: its bucket (created), the lab role, a 1 s poll and short
    timeouts (moto answers at once) unless `given` sets them."""
    values: dict[str, Any] = dict(
        artifacts=aws.S3Uri(SANDBOX_BUCKET, "convlab").child(name), role_arn=LAB_ROLE,
        endpoint_timeout_s=SANDBOX_ENDPOINT_TIMEOUT_S, transform_timeout_s=SANDBOX_TRANSFORM_TIMEOUT_S,
        poll_s=SANDBOX_POLL_S)
    values.update({k: v for k, v in given.items() if v is not None})
    return DeployOptions(name=name, model_dir=Path(model_dir) if model_dir else None,
                         archive=Path(archive) if archive else None, input=input, create_bucket=True,
                         sandbox=True, **values)


def _score(result: dict[str, Any], opts: DeployOptions) -> None:
    """Copy the predictions out of the sandbox and score them when their folders name classes."""
    copied = _copy_predictions(result, opts.work_dir / opts.name / "predictions", opts.client("s3"))
    if copied is None:
        return
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


def deploy_in_sandbox(opts: DeployOptions, deny: Sequence[str] = ()) -> dict[str, Any]:
    """Run the chain with `opts` against a fresh sandbox that refuses `deny`; the options are
    checked before the sandbox starts, and the sandbox stops when the run ends."""
    if opts.input and aws.is_s3(opts.input):
        raise SandboxError("the sandbox's S3 starts empty: give --input as a local folder of images")
    opts.check()
    sandbox = start_sandbox(region=opts.region or "us-east-1")
    # Every client of the run is given the sandbox's endpoint and dummy credentials: the process's
    # environment (and with it any real AWS configuration) is neither read nor changed.
    opts = replace(opts, region=sandbox.region, endpoint_url=sandbox.endpoint_url,
                   credentials=dict(DUMMY_CREDENTIALS))
    try:
        if deny:
            sandbox.deny(*deny)
        result = deploy(opts)
        result["sandbox"] = {"endpoint_url": sandbox.endpoint_url, "denied": sandbox.denied()}
        _score(result, opts)
        Path(result["result_path"]).write_text(json.dumps(result, indent=2, default=str))
        return result
    finally:
        sandbox.stop()


def sandbox_deploy(model_dir: str | Path, images: str | Path, *, name: str = "convlab-demo",
                   work_dir: str | Path = "work/deploy",
                   deny: tuple[str, ...] = ("CreateEndpointConfig", "CreateTransformJob"),
                   progress: bool = True) -> dict[str, Any]:
    """The deploy chain for a model_dir and a folder of images, against a fresh sandbox that
    refuses `deny`; returns the result (deploy.fallback.summary_line(result) says it in words)."""
    opts = sandbox_options(name, model_dir=model_dir, input=str(images), work_dir=Path(work_dir),
                           progress=progress)
    return deploy_in_sandbox(opts, deny)
