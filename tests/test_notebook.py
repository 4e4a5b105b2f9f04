"""The SageMaker Studio notebook, executed end to end with nbclient against the live moto server.

The kernel is a separate process: it reaches the server over HTTP through AWS_ENDPOINT_URL, and
the harness (tests/fixtures_sdk.py) installs the SDK's after-call hook there through an IPython
startup file. The server runs in this process, so the refusal of CreateEndpointConfig installed
here is what the kernel's calls meet, as in a Learner Lab account. moto's training and transform
jobs run nothing, so the deploy step gets a real model.tar.gz (a CNN trained on real data by the
session's `trained_model_dir`) through CONVLAB_MODEL_URI.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import boto3
import nbformat
from nbclient import NotebookClient

from training.experiments.records import load_records
from training.experiments.runner import plan_studies

from .fixtures_experiments import BASELINE_SPEC, KERNEL_SPEC
from .fixtures_sdk import TEST_BUCKET
from .study_jobs_harness import STARTUP

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOK = NOTEBOOKS / "convlab_sagemaker.ipynb"
HOOK_PROBE = ("import botocore.handlers\n"
              "print('harness hook:', any(spec[0] == 'after-call.sagemaker' and spec[1].__name__ == 'drop_empty_dicts'"
              " for spec in botocore.handlers.BUILTIN_HANDLERS))")


def _text(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output["text"])
        elif "data" in output and "text/plain" in output["data"]:
            parts.append(output["data"]["text/plain"])
    return "".join(parts)


def test_notebook_matches_its_generator():
    done = subprocess.run([sys.executable, str(NOTEBOOKS / "build_notebook.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_notebook_runs_end_to_end_and_reports_a_transform_job_without_outputs(aws, deny_operations, kernel_environ,
                                                                    model_archive, study_runs, tmp_path):
    deny_operations("CreateEndpointConfig")
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=TEST_BUCKET)
    s3.upload_file(str(model_archive), TEST_BUCKET, "models/cnn/model.tar.gz")
    work = tmp_path / "work"
    # The study section: the tiny studies of tests/fixtures_experiments.py; each of its jobs gets the
    # archive a real local run of the same (config, seed) wrote (moto's jobs write none).
    local_runs, _, studies, _, _ = study_runs
    specs = tmp_path / "studies.json"
    specs.write_text(json.dumps([BASELINE_SPEC, KERNEL_SPEC]))
    startup = Path(kernel_environ["IPYTHONDIR"]) / "profile_default" / "startup"
    (startup / "01-study-jobs.py").write_text(STARTUP)
    env = {**kernel_environ, "CONVLAB_MODEL_URI": f"s3://{TEST_BUCKET}/models/cnn/model.tar.gz",
           "CONVLAB_WORK_DIR": str(work), "CONVLAB_STUDY_SPECS": str(specs),
           "CONVLAB_TEST_STUDY_RUNS": str(local_runs), "CONVLAB_POLL_SECONDS": "0"}

    before = sorted(NOTEBOOKS.rglob("*"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(HOOK_PROBE))   # in this copy only
    client = NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    try:
        client.execute(env=env)   # raises CellExecutionError naming the cell on any error
    finally:
        nbformat.write(notebook, tmp_path / "executed.ipynb")   # for a look after a failure

    assert _text(notebook.cells.pop()).strip() == "harness hook: True"
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code_cells)
    assert not [o for cell in code_cells for o in cell.outputs if o.output_type == "error"]
    outputs = "\n".join(_text(cell) for cell in code_cells)
    images = [o for cell in code_cells for o in cell.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 3   # class distribution, sample grid, predictions
    assert sorted(NOTEBOOKS.rglob("*")) == before   # everything it wrote went to CONVLAB_WORK_DIR

    # Deploy: the endpoint was refused by the account's explicit deny; the batch transform job
    # completed without writing its outputs (moto's jobs write none): a failure, with the numbers.
    result = json.loads((work / "deploy-result.json").read_text())
    assert result["served_by"] is None
    assert [(a["step"], a["status"]) for a in result["attempts"]] == [("endpoint", "refused"), ("transform", "failed")]
    assert (result["failure"]["inputs"], result["failure"]["outputs"]) == (10, 0)
    assert "served by: None  (exit status 1)" in outputs and "stopped: transform job" in outputs
    refusal = result["refusals"][0]
    assert (refusal["operation"], refusal["error_code"]) == ("CreateEndpointConfig", "AccessDeniedException")
    assert "explicit deny" in refusal["message"]
    assert "why not endpoint: CreateEndpointConfig" in outputs

    # The study: one training job per (config, seed), records read from each job's archive, the report.
    planned = plan_studies(studies).runs
    records = load_records(work / "study")
    assert sorted(records) == sorted(run.run_id for run in planned)
    assert f"{len(planned)} runs: {len(planned)} trained as SageMaker jobs" in outputs
    sm = boto3.client("sagemaker")
    for rid, record in records.items():
        assert record["backend"] == "sagemaker"
        described = sm.describe_training_job(TrainingJobName=record["job_name"])
        assert record["model_artifact"] == described["ModelArtifacts"]["S3ModelArtifacts"]
        assert record["test_accuracy"] == load_records(local_runs)[rid]["test_accuracy"]
    report = (work / "reports" / "sagemaker-study" / "README.md").read_text()
    assert all(rid in report for rid in records) and "Kernel size" in report
    assert "kernel_size):" in outputs and "over 2 jobs" in outputs

    # What the notebook did in the account: two training jobs, then the study's, one transform job, inputs in S3.
    summaries = sm.list_training_jobs(MaxResults=100)["TrainingJobSummaries"]
    assert len(summaries) == 2 + len(planned)
    study_jobs = {record["job_name"] for record in records.values()}
    jobs = {j["TrainingJobName"]: sm.describe_training_job(TrainingJobName=j["TrainingJobName"])
            for j in summaries if j["TrainingJobName"] not in study_jobs}
    assert sorted(d["HyperParameters"]["model"] for d in jobs.values()) == ["cnn", "mlp"]
    for described in jobs.values():
        channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in described["InputDataConfig"]}
        assert channels["train"] == f"s3://{TEST_BUCKET}/convlab/fashion-mnist/train/"
        assert described["EnableManagedSpotTraining"] is True
    job_name = result["failure"]["resource"].split()[-1]
    transform = sm.describe_transform_job(TransformJobName=job_name)
    assert transform["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"].endswith("/transform-input/")
    inputs = s3.list_objects_v2(Bucket=TEST_BUCKET, Prefix="convlab/fashion-mnist/transform-input/")["KeyCount"]
    assert inputs == 10 == result["failure"]["inputs"]

    # The transform job (simulated) wrote nothing, so the notebook said so and predicted here.
    predictions = sorted((work / "local-predictions").rglob("*.png.out"))
    assert len(predictions) == 10 and "the transform job wrote 0 of 10 outputs" in outputs
    assert "10 answers (local predictions" in outputs
    # Clean up: the SageMaker model the deploy registered is gone.
    assert sm.list_models()["Models"] == []
