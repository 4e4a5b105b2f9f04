"""`deploy`: package, upload, register, then serve by the first way the account allows.

    1. endpoint   real-time endpoint + smoke invocation
    2. transform  SageMaker batch transform over the input prefix
    3. local      the same batch transform run in this process (deploy.transform)

A step falls back only when the account refuses it (deploy.aws.refusal_kind: an explicit deny or
AccessDenied, a quota, an instance type not offered, no capacity); whatever the refused step
created is deleted first. A resource that ends Failed, times out, or a transform job short of
outputs stops the chain (StepFailed: AWS's FailureReason and what to do next), as does any other
error. Options are checked before anything is created; after that the result (where the
resources live, which way served, every refusal, the failure, what exists now, where the
predictions are) is written as JSON in every case.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable

from botocore.exceptions import BotoCoreError

from deploy import aws, register, steps
from deploy.errors import DeployError, Refusal, StepFailed
from deploy.options import STEPS, DeployOptions  # noqa: F401 - DeployOptions is part of this API
from deploy.package import build_archive, extract_archive, verify_archive
from deploy.resources import delete_all
from deploy.smoke import smoke_payload
from deploy.stores import LocalStore, S3Store, open_store, upload_folder

log = logging.getLogger(__name__)

def suffixed(name: str, suffix: str) -> str:
    """`name` + `suffix`, cutting the name so the whole stays within SageMaker's 63 characters."""
    return name[:63 - len(suffix)].rstrip("-") + suffix


class Chain:
    """One deploy run: its clients, the resources it created, and its result record."""

    def __init__(self, opts: DeployOptions) -> None:
        self.opts = opts
        self.sm = opts.client("sagemaker")
        self.s3 = opts.client("s3", max_pool=max(10, opts.workers * 2))
        self.runtime = opts.client("sagemaker-runtime")
        self.region = aws.region_of(self.sm)
        self.created: list[dict[str, str]] = []
        self.output = opts.output or opts.artifacts.child("predictions").as_prefix()
        self.work = opts.work_dir / opts.name
        self.result: dict[str, Any] = {
            "name": opts.name, "location": None, "region": self.region,
            "served_by": None, "attempts": [], "refusals": [], "resources": self.created, "deleted": [],
            "predictions": None}
        self.archive: Path | None = None
        self.model_name: str | None = None
        self.input_uri: aws.S3Uri | None = None

    # -- bookkeeping -------------------------------------------------------------------------
    def refused(self, step: str, refusal: Refusal) -> None:
        record = {"step": step, **refusal.as_record()}
        self.result["refusals"].append(record)
        log.warning("%s refused (%s): %s", step, refusal.code, refusal.message)

    def attempt(self, step: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        """Run one serving step. On any failure delete what it created; then a Refusal returns
        None (fall back) and anything else (StepFailed, an AWS error) propagates (stop)."""
        before = len(self.created)
        try:
            predictions = run()
        except Exception as exc:  # noqa: BLE001 - cleanup first, then decide
            made = self.created[before:]
            del self.created[before:]
            outcomes = delete_all(self.sm, self.s3, made)
            self.result["deleted"] += outcomes
            self.created += [o["record"] for o in outcomes if o["status"] in ("kept", "failed")]
            if isinstance(exc, StepFailed):
                self.result["failure"] = {"step": step, **exc.as_record()}
                self.result["attempts"].append({"step": step, "status": "failed", "error": str(exc)})
                raise
            if not isinstance(exc, Refusal):
                self.result["attempts"].append({"step": step, "status": "error", "error": str(exc)})
                raise
            self.refused(step, exc)
            self.result["attempts"].append({"step": step, "status": "refused", "error_code": exc.code})
            return None
        self.result["attempts"].append({"step": step, "status": "served"})
        return predictions

    def skip(self, step: str, why: str) -> None:
        log.info("skipping %s: %s", step, why)
        self.result["attempts"].append({"step": step, "status": "skipped", "reason": why})

    # -- stages ------------------------------------------------------------------------------
    def package(self) -> None:
        opts = self.opts
        self.archive = Path(opts.archive) if opts.archive else build_archive(opts.model_dir, self.work / "model.tar.gz")
        verify_archive(self.archive)
        self.result["archive"] = {"path": str(self.archive)}

    def upload_and_register(self) -> None:
        opts, archive = self.opts, self.archive
        assert archive is not None
        try:
            model_uri, metrics_uri, made = register.upload_archive(
                self.s3, archive, opts.artifacts, opts.create_bucket, self.region)
        except Refusal as refusal:
            self.refused("upload", refusal)
            return
        self.created += made
        self.result["archive"]["s3_uri"] = str(model_uri)
        tf_version = register.archive_json(archive, "config.json").get("versions", {}).get("tensorflow")
        image, source = register.resolve_image_uri(opts.image_uri, self.region, tf_version, opts.instance_type)
        self.result["image"] = {"uri": image, "source": source}
        name = opts.model_name or opts.name
        try:
            arn, made_model = register.create_model(self.sm, name, image, str(model_uri), opts.role_arn)
        except Refusal as refusal:
            self.refused("register", refusal)
            return
        self.model_name = name
        if made_model:
            self.created.append({"type": "model", "name": name})
        self.result["model"] = {"name": name, "arn": arn}
        if opts.package_group:
            metrics = register.archive_json(archive, "metrics.json")
            digest = register.archive_sha256(archive)
            try:
                package_arn, made = register.register_package(
                    self.sm, opts.package_group, image, str(model_uri), str(metrics_uri), metrics,
                    digest, opts.approval, opts.instance_type)
            except Refusal as refusal:
                self.refused("register", refusal)
            else:
                self.created += made
                self.result["model_package"] = {"group": opts.package_group, "arn": package_arn,
                                                "archive_sha256": digest}

    def locate(self) -> None:
        """Record where the resources live: the endpoint URL (a sandbox) or AWS, region, account."""
        identity = aws.call(self.opts.client("sts"), "GetCallerIdentity")
        endpoint_url = self.opts.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
        self.result["location"] = {"endpoint_url": endpoint_url,
                                   "region": self.region, "account": identity["Account"],
                                   "sandbox": self.opts.sandbox}

    def debug_hint(self, step: str) -> str:
        """How to see a failing model on this machine."""
        if step == "transform":
            return (f"run `convlab deploy transform --local --archive {self.archive} --input {self.input_uri} "
                    "--output work/debug-predictions` to see which inputs fail")
        if self.opts.model_dir:
            return f"run `convlab serve --model-dir {self.opts.model_dir}` locally"
        return f"extract {self.archive} into a folder and run `convlab serve --model-dir FOLDER` locally"

    def stage_inputs(self) -> None:
        """Inputs as an S3 prefix for batch transform (a local folder is uploaded)."""
        source = self.opts.input
        if not source:
            return
        if aws.is_s3(source):
            self.input_uri = aws.S3Uri.parse(source, "--input")
            return
        if self.result.get("archive", {}).get("s3_uri") and "transform" in self.opts.steps:
            target = self.opts.artifacts.child("inputs").as_prefix()
            count = upload_folder(LocalStore(source), S3Store(target, self.s3), self.opts.workers)
            self.created.append({"type": "s3_prefix", "uri": str(target)})
            self.input_uri = target
            log.info("uploaded the %d files in %s to %s", count, source, target)

    def endpoint(self) -> dict[str, Any]:
        body, content_type = smoke_payload(self.opts.input, self.archive, self.s3)
        name = self.model_name or self.opts.name
        return steps.endpoint_step(
            self.sm, self.runtime, model_name=name, endpoint_name=suffixed(name, "-ep"),
            config_name=suffixed(name, "-cfg"), instance_type=self.opts.instance_type,
            timeout_s=self.opts.endpoint_timeout_s, smoke_body=body, smoke_type=content_type,
            created=self.created, poll_s=self.opts.poll_s, debug_hint=self.debug_hint("endpoint"))

    def transform(self) -> dict[str, Any]:
        assert self.input_uri is not None and self.model_name is not None
        return steps.transform_job_step(
            self.sm, self.s3, job_name=suffixed(self.opts.name, "-tj"), model_name=self.model_name,
            input_uri=self.input_uri, output_uri=self.output, instance_type=self.opts.instance_type,
            timeout_s=self.opts.transform_timeout_s, created=self.created, poll_s=self.opts.poll_s,
            debug_hint=self.debug_hint("transform"))

    def local(self) -> dict[str, Any]:
        from deploy.transform import Handler, run_transform
        assert self.archive is not None and self.opts.input
        model_dir = extract_archive(self.archive, self.work / "model", clean=True)
        source = open_store(self.opts.input, self.s3)
        uploaded = bool(self.result.get("archive", {}).get("s3_uri"))
        dest = S3Store(self.output, self.s3) if uploaded else LocalStore(self.work / "predictions")
        summary = run_transform(source, dest, Handler(model_dir), batch_size=self.opts.batch_size,
                                workers=self.opts.workers, progress=self.opts.progress)
        where = {"s3_uri": str(self.output)} if uploaded else {"path": str(dest)}
        return {"kind": "local_transform", **where, "model_dir": str(model_dir),
                "serve": f"python -m inference.server --model-dir {model_dir} --port 8080",
                "summary": summary.as_dict()}

    def run(self) -> dict[str, Any]:
        self.locate()
        self.package()
        self.upload_and_register()
        self.stage_inputs()
        for step in self.opts.steps:
            if step in ("endpoint", "transform") and self.model_name is None:
                self.skip(step, "no SageMaker model (upload or CreateModel was refused)")
                continue
            if step == "transform" and self.input_uri is None:
                self.skip(step, "no S3 input prefix of images (the upload of --input was refused)")
                continue
            predictions = self.attempt(step, getattr(self, step))
            if predictions is not None:
                self.result["served_by"] = step
                self.result["predictions"] = predictions
                return self.result
        raise DeployError("no way to serve was left: every step was refused or skipped "
                          f"({', '.join(a['step'] + ' ' + a['status'] for a in self.result['attempts'])})")


def summary_line(result: dict[str, Any]) -> str:
    """One sentence: which way served, after which refusals, and where the predictions are."""
    refusals = "; ".join(f"{r['step']}: {r['error_code']} on {r['operation']}" for r in result.get("refusals", []))
    text = f"served by {result.get('served_by') or 'nothing'}"
    if refusals:
        text += f" after refusals ({refusals})"
    predictions = result.get("predictions") or {}
    where = (predictions.get("endpoint_name") or predictions.get("s3_uri") or predictions.get("path"))
    if where:
        text += f"; predictions: {where}"
    if predictions.get("copied_to"):
        text += f" (copied to {predictions['copied_to']})"
    counts = predictions.get("summary") or {}
    if counts.get("failed"):
        text += f"; {counts['failed']} of {counts.get('inputs', '?')} inputs FAILED (the summary lists each)"
    if predictions.get("accuracy") is not None:
        text += f"; accuracy {predictions['accuracy']:.4f} on {predictions['scored']} labelled images"
    if result.get("error"):
        text += f"; stopped: {result['error']}"
    return text


def deploy(opts: DeployOptions) -> dict[str, Any]:
    """Check the options (nothing is created or written when they are wrong), then run the chain;
    the result JSON is written (and returned) whether it served or stopped."""
    opts.check()
    chain = Chain(opts)
    path = opts.result_path or chain.work / "deploy-result.json"
    try:
        return chain.run()
    except DeployError as exc:
        chain.result["error"] = str(exc)
        raise
    except BotoCoreError as exc:
        chain.result["error"] = f"AWS could not be reached or is not configured: {exc}"
        raise DeployError(chain.result["error"]) from exc
    finally:
        chain.result["result_path"] = str(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(chain.result, indent=2, default=str))
        log.info("deploy result written to %s", path)
