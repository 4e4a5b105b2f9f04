"""`convlab launch` without an AWS account, as a newcomer runs it (`python -m convlab launch ...` in a
child process): the dry run without credentials, `--sandbox` with its job record, the checks that
refuse before money is spent, and no AWS host looked up by any local mode (a resolver hook in the
child records every name it resolves)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import numpy as np
import pytest

from convlab.s3data import plan_transfer, upload_dataset

from .fixtures_data import png_bytes
from .fixtures_sdk import LAB_ROLE, TEST_BUCKET

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--model", "mlp", "--dense", "16", "--epochs", "1"]
# Records every host name the process resolves; waits a moment at exit so background threads
# (the SDK sends its telemetry from one) get as far as their lookups.
RECORDER = '''\
import atexit, os, socket, time
_log, _real = os.environ["CONVLAB_LOOKUP_LOG"], socket.getaddrinfo
def _getaddrinfo(host, *args, **kwargs):
    with open(_log, "a") as handle:
        handle.write(f"{host}\\n")
    return _real(host, *args, **kwargs)
socket.getaddrinfo = _getaddrinfo
atexit.register(time.sleep, 1.5)
'''
NO_ACCOUNT = {"AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
              "AWS_DEFAULT_REGION": "us-east-1"}
AWS_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL",
                 "SAGEMAKER_VALIDATE_ROLE", "SAGEMAKER_ROLE_ARN")


def launch(tmp_path: Path, *argv: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, list[str]]:
    """`python -m convlab launch ARGV` with no AWS account; (the result, the host names it resolved)."""
    hook = tmp_path / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(RECORDER)
    lookups = tmp_path / f"lookups-{len(list(tmp_path.glob('lookups-*')))}.txt"
    environ = {k: v for k, v in os.environ.items() if k not in AWS_VARIABLES}
    environ.update(NO_ACCOUNT, TF_CPP_MIN_LOG_LEVEL="2", CONVLAB_LOOKUP_LOG=str(lookups), **(env or {}))
    environ["PYTHONPATH"] = os.pathsep.join([str(hook), str(ROOT)])
    done = subprocess.run([sys.executable, "-m", "convlab", "launch", "--work-dir", str(tmp_path / "work"),
                           "--no-progress", *argv], capture_output=True, text=True, cwd=ROOT, env=environ,
                          timeout=600)
    hosts = lookups.read_text().split() if lookups.exists() else []
    return done, hosts


def aws_hosts(hosts: list[str]) -> list[str]:
    return [h for h in hosts if h.endswith("amazonaws.com") or h.endswith(".aws") or h == "169.254.169.254"]


def png_folder(dest: Path, images: np.ndarray, labels: np.ndarray, per_class: int = 4) -> Path:
    for label in range(3):
        folder = dest / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        for index in np.flatnonzero(labels == label)[:per_class]:
            (folder / f"{index}.png").write_bytes(png_bytes(images[index]))
    return dest


def test_dry_run_without_credentials_and_with_a_role(fashion_subset_dir, tmp_path):
    done, hosts = launch(tmp_path, "--dry-run", "--role", LAB_ROLE, "--data", str(fashion_subset_dir), *TINY)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "pass --role" not in done.stderr and "the role" in done.stderr and "not checked" in done.stderr
    plan = json.loads(done.stdout)
    upload = plan["upload"]
    assert upload["bucket"] == "sagemaker-us-east-1-account" and "S3 was not read" in upload["s3_note"]
    train = upload["channels"]["train"]
    assert train["files"] == 2 and train["images"] == 6000 and sum(train["classes"].values()) == 6000
    assert train["classes"]["Bag"] == 600 and upload["channels"]["test"]["images"] == 1000
    assert upload["total_bytes"] == sum(p.stat().st_size for p in fashion_subset_dir.iterdir())
    assert len(upload["first_paths"]) == 4 and upload["more_paths"] == 0
    # Not a local mode: boto3 may ask the instance metadata host for credentials, but no AWS service is called.
    assert [h for h in aws_hosts(hosts) if h != "169.254.169.254"] == [], hosts


def test_a_role_given_that_cannot_be_checked_never_says_pass_role(fashion_subset_dir, tmp_path):
    done, _ = launch(tmp_path, "--role", LAB_ROLE, "--bucket", TEST_BUCKET, "--data", str(fashion_subset_dir),
                     *TINY, env={"AWS_EC2_METADATA_DISABLED": "true"})
    lines = [line for line in done.stderr.splitlines() if line.startswith("convlab launch:")]
    assert done.returncode == 1 and len(lines) == 1, done.stderr[-2000:]
    assert f"the execution role --role {LAB_ROLE} cannot be used" in lines[0]
    assert "pass --role" not in lines[0] and "--sandbox" in lines[0]


def test_sandbox_shows_the_plan_and_a_job_record_offline(fashion_test_images, tmp_path):
    data = png_folder(tmp_path / "shapes", *fashion_test_images)
    done, hosts = launch(tmp_path, "--sandbox", "--data", str(data), *TINY)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    record = result["job_record"]
    assert record["TrainingJobStatus"] == "Completed" and record["TrainingJobName"] == result["job_name"]
    assert record["RoleArn"] == LAB_ROLE and record["HyperParameters"]["epochs"] == "1"
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in record["InputDataConfig"]}
    assert channels["train"] == result["channels"]["train"]
    assert channels["train"].startswith("s3://convlab-sandbox/convlab/data/shapes-")
    assert "nothing remains to clean up" in result["sandbox"]["note"]
    assert [h for h in hosts if h not in ("127.0.0.1", "localhost")] == [], hosts

    done, hosts = launch(tmp_path, "--sandbox", "--dry-run", "--data", str(data), *TINY)
    assert done.returncode == 0, done.stderr[-3000:]
    plan = json.loads(done.stdout)
    assert "job_record" not in plan and plan["upload"]["channels"]["train"]["classes"] == {
        "class0": 4, "class1": 4, "class2": 4}
    assert plan["upload"]["files"] == 12 and len(plan["upload"]["first_paths"]) == 5
    assert plan["upload"]["more_paths"] == 7
    assert aws_hosts(hosts) == []


def test_local_container_dry_run_sends_no_telemetry(fashion_subset_dir, tmp_path):
    done, hosts = launch(tmp_path, "--local-container", "--dry-run", "--data", str(fashion_subset_dir), *TINY)
    assert done.returncode == 0, done.stderr[-3000:]
    assert aws_hosts(hosts) == [], hosts
    assert "collect telemetry" not in done.stderr and "\x1b[" not in done.stderr + done.stdout
    config = (tmp_path / "work" / "sagemaker-config.yaml").read_text()
    assert "TelemetryOptOut: true" in config
    assert "SAGEMAKER_USER_CONFIG_OVERRIDE" not in os.environ  # the opt-out does not leak out of the launch


def test_dry_run_refuses_corrupt_and_mixed_data(fashion_test_images, tmp_path):
    data = png_folder(tmp_path / "broken", *fashion_test_images)
    (data / "class1" / "cut.png").write_bytes(png_bytes(fashion_test_images[0][0])[:40])
    done, _ = launch(tmp_path, "--sandbox", "--dry-run", "--data", str(data), *TINY)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "cut.png" in done.stderr.splitlines()[-1]

    from training.data import write_idx

    mixed = png_folder(tmp_path / "mixed", *fashion_test_images)
    write_idx(mixed, fashion_test_images[0][:20], fashion_test_images[1][:20], prefix="train")
    done, _ = launch(tmp_path, "--sandbox", "--dry-run", "--data", str(mixed), *TINY)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"{mixed}: holds several formats" in done.stderr.splitlines()[-1], done.stderr[-2000:]


def test_an_unknown_instance_type_is_refused_with_the_nearest_names(fashion_subset_dir, tmp_path):
    done, _ = launch(tmp_path, "--sandbox", "--dry-run", "--instance-type", "ml.m5.xlarg",
                     "--data", str(fashion_subset_dir), *TINY)
    assert done.returncode == 1
    last = done.stderr.splitlines()[-1]
    assert "--instance-type ml.m5.xlarg: not a SageMaker training instance type" in last and "ml.m5.xlarge" in last


def test_each_data_set_gets_its_own_prefix_and_a_foreign_one_is_refused(aws, fashion_subset_dir,
                                                                          fashion_test_images, tmp_path,
                                                                          monkeypatch, capsys):
    from convlab import launch as launch_cli

    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=TEST_BUCKET)
    other = png_folder(tmp_path / "other", *fashion_test_images)
    copy = Path(shutil.copytree(fashion_subset_dir, tmp_path / "elsewhere" / fashion_subset_dir.name))
    prefixes = {str(d): plan_transfer(s3, d, TEST_BUCKET, None)["prefix"] for d in (fashion_subset_dir, other, copy)}
    assert prefixes[str(fashion_subset_dir)] == prefixes[str(copy)]  # named by content, not by place
    assert prefixes[str(fashion_subset_dir)] != prefixes[str(other)]

    upload_dataset(s3, other, TEST_BUCKET, "shared", progress=False)
    for extra in ([], ["--dry-run"]):
        code = launch_cli.main(["--bucket", TEST_BUCKET, "--role", LAB_ROLE, "--prefix", "shared", "--data",
                                str(fashion_subset_dir), "--work-dir", str(tmp_path / "w"), "--no-progress",
                                *TINY, *extra])
        err = capsys.readouterr().err
        assert code == 1, err
        assert f"s3://{TEST_BUCKET}/shared/train/ already holds 12 objects that are not in" in err
    assert boto3.client("sagemaker").list_training_jobs()["TrainingJobSummaries"] == []
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=TEST_BUCKET, Prefix="shared/")["Contents"]]
    assert len(keys) == 12 and all("class" in k for k in keys)  # nothing of the second data set was sent


def test_container_output_keeps_the_training_lines_without_colour_traces_or_environment_dump():
    # Lines as docker compose prints a LOCAL_CONTAINER job (captured from a run with convlab:latest).
    import io

    from convlab.sdk_local import QuietStream

    printed = io.StringIO()
    stream = QuietStream(printed)
    for chunk in ("\x1b[36malgo-1_1  |\x1b[0m Starting training script\n\x1b[36malgo-1_1  |\x1b[0m ++ echo",
                  " 'Setting up environment variables'\n\x1b[36malgo-1_1  |\x1b[0m Environment Variables:\n",
                  "\x1b[36malgo-1_1  |\x1b[0m SM_HOSTS=[\"algo-1\"]\n\x1b[36malgo-1_1  |\x1b[0m AWS_REGION=us-east-1\n",
                  "\x1b[36malgo-1_1  |\x1b[0m convlab-metrics epoch=1 loss=2.2968 accuracy=0.1065\n",
                  "\x1b[36mcontainer_algo-1_1 exited with code 0\n\x1b[0mAborting on container exit...\n"):
        stream.write(chunk)
    stream.flush()
    assert printed.getvalue().splitlines() == [
        "algo-1_1  | Starting training script", "algo-1_1  | convlab-metrics epoch=1 loss=2.2968 accuracy=0.1065",
        "container_algo-1_1 exited with code 0", "Aborting on container exit..."]


def test_deploy_in_the_sandbox_looks_up_no_aws_host(trained_model_dir, fashion_test_images, tmp_path):
    inputs = png_folder(tmp_path / "inputs", *fashion_test_images, per_class=2)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(RECORDER)
    lookups = tmp_path / "deploy-lookups.txt"
    environ = {k: v for k, v in os.environ.items() if k not in AWS_VARIABLES}
    environ.update(NO_ACCOUNT, TF_CPP_MIN_LOG_LEVEL="2", CONVLAB_LOOKUP_LOG=str(lookups),
                   PYTHONPATH=os.pathsep.join([str(hook), str(ROOT)]))
    done = subprocess.run([sys.executable, "-m", "convlab", "deploy", "deploy", "--sandbox", "--model-dir",
                           str(trained_model_dir), "--input", str(inputs), "--name", "offline", "--work-dir",
                           str(tmp_path / "work"), "--no-progress"], capture_output=True, text=True, cwd=ROOT,
                          env=environ, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["served_by"] == "local"
    hosts = lookups.read_text().split() if lookups.exists() else []
    assert [h for h in hosts if h not in ("127.0.0.1", "localhost")] == [], hosts
