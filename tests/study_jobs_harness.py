"""Notebook-kernel harness for the study's SageMaker jobs on the moto server.

moto's training jobs report Completed at once and write nothing. Installed (by an IPython startup
file, only in the test that needs it) as a before-parameter-build handler of CreateTrainingJob, which
gets the call's parameters, this puts at the job's model-artifact location (where moto says it is:
{S3OutputPath}/{job name}/output/model.tar.gz) the archive the entry point wrote for the same
(config, seed) in a real local run of the same study (CONVLAB_TEST_STUDY_RUNS). Jobs that are not
runs of that study (the notebook's own two) get nothing.
"""
from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

EXCLUDED = ("run_id", "config_id", "backend")


def _archive(runs: Path, rid: str) -> bytes | None:
    record_file = runs / "records" / f"{rid}.json"
    if not record_file.exists():
        return None
    record = json.loads(record_file.read_text())
    metrics = json.dumps({k: v for k, v in record.items() if k not in EXCLUDED}).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        model = runs / "models" / rid
        if model.is_dir():
            for path in sorted(model.rglob("*")):
                if path.is_file() and path.name != "metrics.json":
                    archive.add(path, arcname=str(path.relative_to(model)))
        info = tarfile.TarInfo("metrics.json")
        info.size = len(metrics)
        archive.addfile(info, io.BytesIO(metrics))
    return buffer.getvalue()


def publish_local_run(params=None, **_):
    import boto3

    from training.experiments.records import canonical_hyperparameters, run_id

    runs = Path(os.environ["CONVLAB_TEST_STUDY_RUNS"])
    body = _archive(runs, run_id(canonical_hyperparameters(params.get("HyperParameters") or {})))
    if body is None:
        return
    bucket, _, prefix = params["OutputDataConfig"]["S3OutputPath"][len("s3://"):].partition("/")
    key = "/".join(p for p in (prefix.rstrip("/"), params["TrainingJobName"], "output", "model.tar.gz") if p)
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=body)


STARTUP = '''\
import botocore.handlers

from tests.study_jobs_harness import publish_local_run

botocore.handlers.BUILTIN_HANDLERS.append(("before-parameter-build.sagemaker.CreateTrainingJob", publish_local_run))
'''
