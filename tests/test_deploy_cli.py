"""The deploy command line is safe: it checks before it creates, and cleanup acts only where the
deploy ran. Commands run as the README shows them (`python -m convlab deploy ...`), against the
live moto server of the test session (or a sandbox that no longer exists)."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from deploy import cli
from deploy.fallback import deploy
from deploy.sandbox_run import sandbox_deploy

from .fixtures_deploy import (IMAGE, ROLE, archive, classes, handler, images_dir, options)  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent


def convlab(*argv: str) -> subprocess.CompletedProcess:
    """`python -m convlab ARGV` in a subprocess with this test's environment (the moto server)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "convlab", *argv], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=env)


def last_line(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in done.stderr.splitlines() if line.startswith("convlab deploy")]
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.fixture
def endpoint_deploy(aws, archive, tmp_path) -> Path:
    """A deploy served by an endpoint on the moto server; its result file."""
    result = deploy(options(archive, None, tmp_path, input=None, steps=("endpoint",), package_group="convlab"))
    assert result["served_by"] == "endpoint"
    assert result["model_package"]["archive_sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert result["location"] == {"endpoint_url": aws.endpoint_url, "region": "us-east-1",
                                  "account": "123456789012", "sandbox": False}
    return Path(result["result_path"])


def test_deploy_without_input_creates_nothing_and_writes_no_result(aws, archive, tmp_path):
    done = convlab("deploy", "deploy", "--sandbox", "--archive", str(archive), "--image-uri", IMAGE,
                   "--name", "no-input", "--work-dir", str(tmp_path / "work"))
    assert done.returncode == 1 and done.stdout == ""
    assert last_line(done) == ("convlab deploy deploy: steps transform,local need --input (an s3:// prefix or a "
                               "folder of images): pass --input, or --steps endpoint")
    assert not (tmp_path / "work").exists()

    code = cli.main(["deploy", "--archive", str(archive), "--image-uri", IMAGE, "--bucket", "lab-bucket",
                     "--create-bucket", "--role", ROLE, "--name", "no-input", "--work-dir", str(tmp_path / "work"),
                     "--steps", "endpoint,transform"])
    assert code == 1 and not (tmp_path / "work").exists()
    sm = boto3.client("sagemaker")
    assert boto3.client("s3").list_buckets()["Buckets"] == [] and sm.list_models()["Models"] == []
    assert sm.list_model_package_groups()["ModelPackageGroupSummaryList"] == []


def test_cleanup_after_a_sandbox_deploy_says_nothing_remains(trained_model_dir, images_dir, tmp_path, moto_server):
    result = sandbox_deploy(trained_model_dir, images_dir, name="demo", work_dir=tmp_path, progress=False)
    assert result["served_by"] == "local" and result["predictions"]["accuracy"] > 0.5
    url = result["sandbox"]["endpoint_url"]
    assert result["location"]["endpoint_url"] == url and result["location"]["sandbox"] is True
    done = convlab("deploy", "cleanup", "--result", result["result_path"])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["deleted"] == []
    assert last_line(done) == (f"convlab deploy cleanup: {result['result_path']}: its resources lived in the "
                               f"sandbox at {url}, which stopped when that run ended: nothing remains, nothing "
                               "to delete")


def test_a_deploy_with_failed_inputs_exits_non_zero_and_says_how_many(trained_model_dir, images_dir, tmp_path):
    import shutil

    inputs = Path(shutil.copytree(images_dir, tmp_path / "inputs"))
    first = sorted(p for p in inputs.rglob("*.png"))[0]
    first.write_bytes(first.read_bytes()[:30])  # cut short: not a readable image
    total = len(list(inputs.rglob("*.png")))
    done = convlab("deploy", "deploy", "--sandbox", "--model-dir", str(trained_model_dir), "--input", str(inputs),
                   "--name", "cut", "--work-dir", str(tmp_path / "work"), "--no-progress")
    assert done.returncode == 3, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["served_by"] == "local" and result["predictions"]["summary"]["failed"] == 1
    assert f"1 of {total} inputs FAILED" in last_line(done)


def _edited(path: Path, tmp_path: Path, **location) -> Path:
    result = json.loads(path.read_text())
    result["location"].update(location)
    edited = tmp_path / f"edited-{'-'.join(location)}.json"
    edited.write_text(json.dumps(result))
    return edited


def test_cleanup_refuses_another_account_region_or_endpoint(endpoint_deploy, tmp_path, capsys):
    cases = [
        (_edited(endpoint_deploy, tmp_path, account="111122223333"), [],
         "its resources live in account 111122223333, but the current credentials are account 123456789012"),
        (endpoint_deploy, ["--region", "eu-west-1"], "its resources live in region us-east-1, not eu-west-1"),
        (_edited(endpoint_deploy, tmp_path, endpoint_url=None), [], "its resources live in AWS (account "
         "123456789012 in us-east-1) but AWS_ENDPOINT_URL points at"),
    ]
    for path, extra, expected in cases:
        assert cli.main(["cleanup", "--result", str(path), *extra]) == 1
        printed = capsys.readouterr()
        assert printed.out == "" and expected in printed.err.strip().splitlines()[-1]
    sm = boto3.client("sagemaker")
    assert [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]] == ["lab-run-ep"]   # untouched


def test_registry_cleanup_names_each_resource_it_could_not_delete(endpoint_deploy):
    done = convlab("deploy", "cleanup", "--result", str(endpoint_deploy), "--registry")
    assert done.returncode == 3, done.stderr
    failed = [line for line in done.stderr.splitlines() if line.startswith("convlab deploy cleanup:")]
    assert len(failed) == 2 and "<html" not in done.stderr.lower() + done.stdout.lower()
    assert failed[0].startswith("convlab deploy cleanup: could not delete model_package arn:aws:sagemaker:")
    assert failed[0].endswith(": DeleteModelPackage: NotImplemented: the sandbox (moto) does not implement "
                              "DeleteModelPackage")
    assert failed[1] == ("convlab deploy cleanup: could not delete model_package_group convlab: "
                         "DeleteModelPackageGroup: NotImplemented: the sandbox (moto) does not implement "
                         "DeleteModelPackageGroup")
    report = json.loads(done.stdout)
    assert {o["resource"].split()[0]: o["status"] for o in report["deleted"]} == {
        "endpoint": "deleted", "endpoint_config": "deleted", "model": "deleted", "model_package": "failed",
        "model_package_group": "failed"}


def test_storage_cleanup_of_a_bucket_already_gone_succeeds(endpoint_deploy):
    s3 = boto3.client("s3")
    for obj in s3.list_objects_v2(Bucket="lab-bucket").get("Contents", []):
        s3.delete_object(Bucket="lab-bucket", Key=obj["Key"])
    s3.delete_bucket(Bucket="lab-bucket")
    done = convlab("deploy", "cleanup", "--result", str(endpoint_deploy), "--storage")
    assert done.returncode == 0, done.stderr
    statuses = {o["resource"]: o["status"] for o in json.loads(done.stdout)["deleted"]}
    assert statuses["s3_bucket lab-bucket"] == "absent"
    assert statuses["s3_object s3://lab-bucket/convlab/lab-run/model.tar.gz"] == "absent"
    assert statuses["endpoint lab-run-ep"] == "deleted"


def test_sandbox_runner_does_not_import_the_command_line():
    code = "import sys, deploy.sandbox_run; print('deploy.cli' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert done.stdout.strip() == "False", done.stderr


def test_a_sandbox_deploy_passes_its_endpoint_to_the_clients_and_leaves_the_environment(
        trained_model_dir, images_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing answers there
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    before = dict(os.environ)
    result = sandbox_deploy(trained_model_dir, images_dir, name="env", work_dir=tmp_path, progress=False)
    assert result["served_by"] == "local" and result["location"]["endpoint_url"] == result["sandbox"]["endpoint_url"]
    assert dict(os.environ) == before
