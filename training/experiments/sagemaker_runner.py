"""Run a study on SageMaker: one training job per (config, seed), launched in parallel through the
SageMaker Python SDK v3 (ModelTrainer), then each job's metrics.json collected from its model.tar.gz.

The same entry point as a local run trains each job (training.local.stage_source_dir builds the source
dir AWS's TensorFlow container runs). Launched jobs are remembered in <runs>/sagemaker_jobs.json, so a
rerun collects jobs still running instead of launching them again, and skips runs already recorded.
"""
from __future__ import annotations

import io
import json
import logging
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from convlab.archives import UnsafeMember, read_json_member, safe_extract
from convlab.s3io import download
from convlab.sagemaker_setup import created_job_name

from .records import load_records, make_record, record_path, write_json_atomic
from .runner import StudyRunError, best_run_ids, pending_runs, plan_studies, prepare_runs_folder
from .spec import Study

log = logging.getLogger(__name__)

JOBS_FILE = "sagemaker_jobs.json"
TERMINAL = ("Completed", "Failed", "Stopped")
JOB_BASE_LENGTH = 63 - 15  # job names are at most 63 characters; the SDK adds "-YYYYmmddHHMMSS"


@dataclass
class SageMakerSettings:
    role: str                                  # execution role ARN the jobs run as
    training_image: str                        # e.g. the AWS TensorFlow 2.x CPU training image URI
    instance_type: str = "ml.m5.xlarge"
    output_path: str | None = None             # s3://bucket/prefix for model.tar.gz (default: SDK's bucket)
    base_job_name: str = "convlab-study"
    max_parallel: int = 8                      # jobs running at once (account quotas are often low)
    max_runtime_seconds: int = 3 * 3600
    poll_seconds: float = 30.0
    region: str | None = None


def _s3_parts(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise StudyRunError(f"expected an s3://bucket/key URI, got {uri!r}")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key


def _trainer(run, settings: SageMakerSettings, source_dir: Path, session):
    from sagemaker.core.training.configs import (
        Compute, MetricDefinition, OutputDataConfig, SourceCode, StoppingCondition,
    )
    from sagemaker.train import ModelTrainer

    from ..local import ENTRY_SCRIPT
    from ..metrics import METRIC_DEFINITIONS

    # The SDK appends a timestamp to the second: the run id keeps jobs launched in one second apart.
    base_job_name = f"{settings.base_job_name}-{run.run_id}"[:JOB_BASE_LENGTH].rstrip("-")
    options = dict(
        training_image=settings.training_image, role=settings.role, base_job_name=base_job_name,
        source_code=SourceCode(source_dir=str(source_dir), entry_script=ENTRY_SCRIPT, requirements="requirements.txt"),
        compute=Compute(instance_type=settings.instance_type, instance_count=1),
        stopping_condition=StoppingCondition(max_runtime_in_seconds=settings.max_runtime_seconds),
        hyperparameters={k: str(v) for k, v in run.hyperparameters.items()},
    )
    if settings.output_path:
        options["output_data_config"] = OutputDataConfig(s3_output_path=settings.output_path)
    if session is not None:
        options["sagemaker_session"] = session
    trainer = ModelTrainer(**options)
    return trainer.with_metric_definitions(
        [MetricDefinition(name=d["Name"], regex=d["Regex"]) for d in METRIC_DEFINITIONS])


def launch(run, channels: dict[str, str], settings: SageMakerSettings, source_dir: Path, session=None) -> str:
    """Start one training job (without waiting) and return its name."""
    from sagemaker.core.training.configs import InputData

    trainer = _trainer(run, settings, source_dir, session)
    inputs = [InputData(channel_name=name, data_source=uri) for name, uri in sorted(channels.items())]
    trainer.train(input_data_config=inputs, wait=False, logs=False)
    name = created_job_name(trainer)
    if name is None:
        raise StudyRunError(f"run {run.run_id}: the SageMaker SDK created no training job")
    return name


def read_metrics(s3, artifact_uri: str) -> dict:
    """metrics.json out of a job's model.tar.gz."""
    bucket, key = _s3_parts(artifact_uri)
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        raise StudyRunError(f"{artifact_uri}: the job reported this model artifact but it does not exist") from None
    metrics = read_json_member(io.BytesIO(body), "metrics.json")
    if metrics is None:
        raise StudyRunError(f"{artifact_uri}: no metrics.json at the top of the archive; was it written "
                            "by convlab's training entry point?")
    return metrics


def download_model(s3, artifact_uri: str, dest: Path) -> Path:
    """Extract a job's model.tar.gz into dest (a local model_dir for the report's figures)."""
    bucket, key = _s3_parts(artifact_uri)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="convlab-model-") as scratch:
        archive = download(s3, bucket, key, Path(scratch) / "model.tar.gz")
        with tarfile.open(archive, "r:gz") as tar:
            try:
                safe_extract(tar, dest, artifact_uri)
            except UnsafeMember as exc:
                raise StudyRunError(str(exc)) from None
    return dest


def run_sagemaker(studies: list[Study], channels: dict[str, str], runs: str | Path, settings: SageMakerSettings,
                  session=None, boto_session=None) -> dict:
    """Launch every missing run as a SageMaker training job, wait, and record each job's metrics."""
    import boto3

    from ..local import stage_source_dir

    bad = {name: uri for name, uri in channels.items() if not str(uri).startswith("s3://")}
    if bad:
        raise StudyRunError(f"--sagemaker needs S3 channels (s3://bucket/prefix); got {bad}")
    runs = Path(runs)
    boto_session = boto_session or boto3.Session(region_name=settings.region)
    sm, s3 = boto_session.client("sagemaker"), boto_session.client("s3")
    plan = plan_studies(studies)
    prepare_runs_folder(runs, channels, plan)
    todo, done = pending_runs(runs, plan)
    jobs_file = runs / JOBS_FILE
    jobs = json.loads(jobs_file.read_text()) if jobs_file.exists() else {}
    queue = [run for run in todo if run.run_id not in jobs]
    active = {run.run_id: jobs[run.run_id] for run in todo if run.run_id in jobs}
    by_id = {run.run_id: run for run in todo}
    failures = []
    log.info("%d runs: %d recorded, %d jobs already launched, %d to launch", len(plan.runs), len(done),
             len(active), len(queue))
    with tempfile.TemporaryDirectory(prefix="convlab-source-") as staging:
        source_dir = stage_source_dir(Path(staging) / "source")
        while queue or active:
            while queue and len(active) < settings.max_parallel:
                run = queue.pop(0)
                active[run.run_id] = jobs[run.run_id] = launch(run, channels, settings, source_dir, session)
                write_json_atomic(jobs_file, jobs)
                log.info("launched %s as job %s", run.describe(), jobs[run.run_id])
            for rid, job in list(active.items()):
                described = sm.describe_training_job(TrainingJobName=job)
                status = described["TrainingJobStatus"]
                if status not in TERMINAL:
                    continue
                del active[rid]
                if status != "Completed":
                    del jobs[rid]  # a rerun launches it again
                    write_json_atomic(jobs_file, jobs)
                    failures.append(f"{by_id[rid].describe()}: job {job} {status}: "
                                    f"{described.get('FailureReason', 'no reason given')}")
                    continue
                artifact = described["ModelArtifacts"]["S3ModelArtifacts"]
                metrics = read_metrics(s3, artifact)
                record = make_record(rid, by_id[rid].hyperparameters, metrics, "sagemaker", job_name=job,
                                     model_artifact=artifact)
                write_json_atomic(record_path(runs, rid), record)
                log.info("recorded %s from job %s: test accuracy %.4f", rid, job, metrics["test_accuracy"])
            if active:
                time.sleep(settings.poll_seconds)
    fetch_best_models(runs, s3)
    if failures:
        raise StudyRunError(f"{len(failures)} job(s) did not complete (a rerun launches them again):\n"
                            + "\n".join(failures))
    return {"planned": len(plan.runs), "trained": [r.run_id for r in todo], "skipped": [r.run_id for r in done]}


def fetch_best_models(runs: Path, s3) -> list[str]:
    """Download the model of each study's best run, for the report's figures that need a model."""
    records = load_records(runs)
    fetched = []
    for rid in sorted(set(best_run_ids(runs).values())):
        target = runs / "models" / rid
        artifact = records[rid].get("model_artifact")
        if artifact and not (target / "model.keras").is_file():
            download_model(s3, artifact, target)
            fetched.append(rid)
    return fetched
