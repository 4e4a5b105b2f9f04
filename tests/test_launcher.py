"""The SageMaker launcher (SDK v3 ModelTrainer) against the live moto server.

moto records a training job and reports it Completed at once; it runs no container and writes no
objects. So these tests check what the launcher sends and uploads. That the job's code really
trains in AWS's TensorFlow container is tested by test_training.py's staged-source-dir test
(test_staged_source_dir_runs_like_sagemaker), which runs the exact source dir ModelTrainer uploads.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import boto3
import pytest

from convlab import launch
from convlab.s3data import fetch_metrics, plan_upload, upload_dataset
from training.metrics import METRIC_DEFINITIONS

from .fixtures_data import png_bytes
from .fixtures_sdk import LAB_ROLE, TEST_BUCKET

AWS_TF_TRAINING = re.compile(r"^763104351884\.dkr\.ecr\.us-east-1\.amazonaws\.com/tensorflow-training:"
                             r"(?P<version>2\.\d+)-cpu-py3\d+$")


def _tensorflow_version() -> str:
    for name in ("tensorflow", "tensorflow-cpu"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    raise AssertionError("TensorFlow is not installed")


def _objects(s3, prefix: str) -> dict[str, int]:
    listing = s3.list_objects_v2(Bucket=TEST_BUCKET, Prefix=prefix).get("Contents", [])
    return {obj["Key"][len(prefix):]: obj["Size"] for obj in listing}


def test_launch_sends_the_job_it_was_asked_for(sdk_session, wire_requests, fashion_subset_dir, model_archive,
                                               trained_model_dir, tmp_path):
    sent = wire_requests(sdk_session.boto_session, "CreateTrainingJob")
    cfg = launch.LaunchConfig(
        hyperparameters={"model": "cnn", "epochs": "3", "filters": 16, "batch_norm": True, "learning_rate": "0.002"},
        data=str(fashion_subset_dir), prefix="tests/fmnist", role=LAB_ROLE, instance_type="ml.c5.2xlarge",
        instance_count=2, spot=True, max_run_s=1800, max_wait_s=3600,
        checkpoint_uri=f"s3://{TEST_BUCKET}/checkpoints/cnn/", work_dir=tmp_path, progress=False)
    result = launch.launch(cfg, session=sdk_session)

    sm, s3 = sdk_session.boto_session.client("sagemaker"), sdk_session.boto_session.client("s3")
    job = sm.describe_training_job(TrainingJobName=result.job_name)
    assert result.job_name.startswith("convlab-cnn-") and job["TrainingJobStatus"] == "Completed"

    image = AWS_TF_TRAINING.match(job["AlgorithmSpecification"]["TrainingImage"])
    assert image, job["AlgorithmSpecification"]["TrainingImage"]
    installed = tuple(int(x) for x in _tensorflow_version().split(".")[:2])
    assert (2, 16) <= tuple(int(x) for x in image["version"].split(".")) <= installed

    assert job["ResourceConfig"]["InstanceType"] == "ml.c5.2xlarge"
    assert job["ResourceConfig"]["InstanceCount"] == 2
    assert job["RoleArn"] == LAB_ROLE

    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]}
    assert channels["train"] == f"s3://{TEST_BUCKET}/tests/fmnist/train/"
    assert channels["test"] == f"s3://{TEST_BUCKET}/tests/fmnist/test/"
    assert {"code", "sm_drivers"} <= set(channels)   # ModelTrainer's source dir and its driver scripts
    local = {p.name: p.stat().st_size for p in fashion_subset_dir.iterdir()}
    assert _objects(s3, "tests/fmnist/train/") == {n: s for n, s in local.items() if n.startswith("train-")}
    assert _objects(s3, "tests/fmnist/test/") == {n: s for n, s in local.items() if n.startswith("t10k-")}
    code_prefix = channels["code"].split(f"s3://{TEST_BUCKET}/", 1)[1]
    code = _objects(s3, code_prefix)
    assert {"train.py", "requirements.txt", "training/train.py", "training/metrics.py"} <= {
        key.lstrip("/") for key in code}

    hps = job["HyperParameters"]
    assert (hps["model"], hps["epochs"], hps["filters"], hps["batch_norm"], hps["learning_rate"]) == (
        "cnn", "3", "16", "true", "0.002")
    assert hps["depth"] == "2" and hps["kernel_size"] == "3"   # the rest of the model config, spelled out

    # moto answers DescribeTrainingJob with MetricDefinitions of its own: read what was sent.
    assert len(sent) == 1
    assert sent[0]["AlgorithmSpecification"]["MetricDefinitions"] == METRIC_DEFINITIONS
    assert sent[0]["AlgorithmSpecification"]["TrainingImage"] == job["AlgorithmSpecification"]["TrainingImage"]

    assert job["EnableManagedSpotTraining"] is True
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 1800, "MaxWaitTimeInSeconds": 3600}
    assert job["CheckpointConfig"]["S3Uri"] == f"s3://{TEST_BUCKET}/checkpoints/cnn/"
    assert job["OutputDataConfig"]["S3OutputPath"] == f"s3://{TEST_BUCKET}/convlab/output/"
    assert result.model_uri == job["ModelArtifacts"]["S3ModelArtifacts"]
    assert result.model_uri == f"s3://{TEST_BUCKET}/convlab/output/{result.job_name}/output/model.tar.gz"

    # The simulated job wrote nothing: the launcher says so instead of failing.
    assert result.metrics is None and result.model_uri in result.metrics_note

    # A real model.tar.gz where the job puts it: metrics.json comes back from it.
    bucket, _, key = result.model_uri[len("s3://"):].partition("/")
    s3.upload_file(str(model_archive), bucket, key)
    metrics = fetch_metrics(s3, result.model_uri, tmp_path / "download")
    assert metrics == json.loads((trained_model_dir / "metrics.json").read_text())


def test_data_already_in_s3_and_on_demand_baseline(sdk_session, fashion_subset_dir, tmp_path):
    s3 = sdk_session.boto_session.client("s3")
    s3.create_bucket(Bucket=TEST_BUCKET)
    channels = upload_dataset(s3, fashion_subset_dir, TEST_BUCKET, "tests/fmnist", progress=False)
    stamps = {o["Key"]: o["LastModified"] for o in s3.list_objects_v2(Bucket=TEST_BUCKET)["Contents"]}
    assert upload_dataset(s3, fashion_subset_dir, TEST_BUCKET, "/tests/fmnist/", progress=False) == channels
    assert {o["Key"]: o["LastModified"] for o in s3.list_objects_v2(Bucket=TEST_BUCKET)["Contents"]} == stamps

    own_image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/convlab:1"
    cfg = launch.LaunchConfig(hyperparameters={"model": "mlp", "epochs": 2}, data=f"s3://{TEST_BUCKET}/tests/fmnist",
                              role=LAB_ROLE, spot=False, image_uri=own_image, work_dir=tmp_path,
                              output_path=f"s3://{TEST_BUCKET}/runs/")
    result = launch.launch(cfg, session=sdk_session)
    job = sdk_session.boto_session.client("sagemaker").describe_training_job(TrainingJobName=result.job_name)
    assert result.job_name.startswith("convlab-mlp-")
    assert job["AlgorithmSpecification"]["TrainingImage"] == own_image
    assert {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]
            if c["ChannelName"] in ("train", "test")} == channels
    assert (job["HyperParameters"]["model"], job["HyperParameters"]["dense"]) == ("mlp", "256,128")
    assert job["EnableManagedSpotTraining"] is False and "CheckpointConfig" not in job
    assert "MaxWaitTimeInSeconds" not in job["StoppingCondition"]
    assert result.model_uri.startswith(f"s3://{TEST_BUCKET}/runs/{result.job_name}/")


def test_image_folders_keep_their_train_and_test_split(fashion_test_images, tmp_path):
    images, labels = fashion_test_images
    for split, rows in (("train", range(0, 6)), ("test", range(6, 9))):
        for row in rows:
            path = tmp_path / "data" / split / f"class{labels[row]}" / f"{row}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png_bytes(images[row]))
    plan = plan_upload(tmp_path / "data")
    assert sorted(key for _, key in plan["train"]) == sorted(f"class{labels[r]}/{r}.png" for r in range(6))
    assert sorted(key for _, key in plan["test"]) == sorted(f"class{labels[r]}/{r}.png" for r in range(6, 9))


def _run_main(capsys, *argv: str) -> tuple[int, str]:
    code = launch.main(list(argv))
    return code, capsys.readouterr().err


def test_bad_hyperparameter_stops_before_any_aws_call(aws, capsys, tmp_path):
    code, err = _run_main(capsys, "--bucket", TEST_BUCKET, "--role", LAB_ROLE, "--work-dir", str(tmp_path),
                          "--model", "cnn", "--filterz", "3")
    assert code == 1
    assert "unknown hyperparameter 'filterz'" in err and "filters" in err and "Traceback" not in err
    code, err = _run_main(capsys, "--bucket", TEST_BUCKET, "--model", "resnet")
    assert code == 1 and "hyperparameter 'model': expected one of ('mlp', 'cnn'), got 'resnet'" in err
    assert boto3.client("sagemaker").list_training_jobs()["TrainingJobSummaries"] == []
    assert boto3.client("s3").list_buckets().get("Buckets", []) == []


def test_missing_role_is_one_clear_line(aws, capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("SAGEMAKER_ROLE_ARN", raising=False)
    code, err = _run_main(capsys, "--bucket", TEST_BUCKET, "--work-dir", str(tmp_path), "--no-progress")
    lines = [line for line in err.splitlines() if line.startswith("convlab launch:")]
    assert code == 1 and len(lines) == 1 and "Traceback" not in err
    assert "no usable SageMaker execution role" in lines[0] and "--role" in lines[0]
    assert "SAGEMAKER_ROLE_ARN" in lines[0]


def test_local_container_without_docker_points_to_local_mode(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))   # no docker command on it
    code, err = _run_main(capsys, "--local-container", "--work-dir", str(tmp_path))
    assert code == 1
    assert "Docker" in err and "convlab train --local" in err and "Traceback" not in err


def test_cli_is_reachable_from_convlab_and_the_script():
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    for argv in ([sys.executable, "-m", "convlab", "launch", "--help"],
                 [sys.executable, str(root / "scripts" / "launch_training.py"), "--help"]):
        done = subprocess.run(argv, capture_output=True, text=True, cwd=root, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "--local-container" in done.stdout and "--instance-count" in done.stdout


def test_local_container_request_passes_the_sdk_checks(capsys, fashion_subset_dir, tmp_path):
    # --dry-run: ModelTrainer builds and validates the whole LOCAL_CONTAINER request, and stops
    # where it would start Docker.
    code = launch.main(["--local-container", "--dry-run", "--data", str(fashion_subset_dir), "--work-dir",
                        str(tmp_path), "--model", "cnn", "--epochs", "1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    plan = json.loads(captured.out)
    assert (plan["mode"], plan["dry_run"], plan["image_uri"]) == ("local_container", True, launch.LOCAL_IMAGE)
    assert plan["channels"] == {"train": str(fashion_subset_dir.resolve())}
    assert plan["hyperparameters"]["epochs"] == "1"
    assert (tmp_path / "source" / "train.py").is_file()


@pytest.mark.parametrize("args,message", [
    (["--max-run", "7200", "--max-wait", "3600"], "--max-wait 3600 is below --max-run 7200"),
    (["--framework-version", "2.3"], "--framework-version 2.3: AWS has no TensorFlow training image"),
])
def test_inconsistent_job_settings_are_refused(aws, capsys, tmp_path, fashion_subset_dir, args, message):
    code, err = _run_main(capsys, "--bucket", TEST_BUCKET, "--role", LAB_ROLE, "--work-dir", str(tmp_path),
                          "--data", str(fashion_subset_dir), "--no-progress", *args)
    assert code == 1 and message in err


def test_a_hyperparameters_file_that_is_not_an_object_is_one_clear_line(capsys, tmp_path):
    listed = tmp_path / "hyperparameters.json"
    listed.write_text("[5, 128]")
    code, err = _run_main(capsys, "--hyperparameters", str(listed), "--work-dir", str(tmp_path))
    assert code == 1 and "Traceback" not in err
    assert f"--hyperparameters {listed}: a JSON list; expected an object" in err
