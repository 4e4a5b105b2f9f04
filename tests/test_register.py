"""Upload and register against a live moto server: the model, the model package group and the
model package are visible through describe/list calls; re-running duplicates nothing."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import boto3
import pytest

from deploy import cli, register
from deploy.aws import S3Uri
from deploy.errors import DeployError, ImageUriError, RegistrationError
from deploy.package import build_archive

ROLE = "arn:aws:iam::123456789012:role/LabRole"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/convlab:latest"


@pytest.fixture(scope="module")
def archive(trained_model_dir, tmp_path_factory) -> Path:
    return build_archive(trained_model_dir, tmp_path_factory.mktemp("register") / "model.tar.gz")


def _register(archive: Path, name: str = "convlab-cnn-1", group: str | None = "convlab-cnn"):
    sm, s3 = boto3.client("sagemaker"), boto3.client("s3")
    model_uri, metrics_uri, created = register.upload_archive(
        s3, archive, S3Uri("lab-artifacts", f"runs/{name}"), create_bucket=True, region="us-east-1")
    result = register.register(sm, archive=archive, model_name=name, image_uri=IMAGE,
                               model_data_url=str(model_uri), metrics_uri=str(metrics_uri),
                               role_arn=ROLE, group=group)
    return result, created


def test_model_and_package_are_visible_through_describe_and_list(aws, archive, trained_model_dir):
    result, created = _register(archive)
    sm, s3 = boto3.client("sagemaker"), boto3.client("s3")

    stored = s3.get_object(Bucket="lab-artifacts", Key="runs/convlab-cnn-1/model.tar.gz")["Body"].read()
    assert stored == archive.read_bytes()
    assert {"type": "s3_bucket", "name": "lab-artifacts"} in created

    model = sm.describe_model(ModelName="convlab-cnn-1")
    assert model["PrimaryContainer"]["Image"] == IMAGE
    assert model["PrimaryContainer"]["ModelDataUrl"] == "s3://lab-artifacts/runs/convlab-cnn-1/model.tar.gz"
    assert model["ExecutionRoleArn"] == ROLE
    assert [m["ModelName"] for m in sm.list_models()["Models"]] == ["convlab-cnn-1"]

    group = sm.describe_model_package_group(ModelPackageGroupName="convlab-cnn")
    assert group["ModelPackageGroupName"] == "convlab-cnn"
    packages = sm.list_model_packages(ModelPackageGroupName="convlab-cnn")["ModelPackageSummaryList"]
    assert [p["ModelPackageArn"] for p in packages] == [result.package_arn]

    package = sm.describe_model_package(ModelPackageName=result.package_arn)
    spec = package["InferenceSpecification"]
    assert spec["Containers"] == [{"Image": IMAGE, "ModelDataUrl": model["PrimaryContainer"]["ModelDataUrl"]}]
    assert spec["SupportedContentTypes"] == ["image/png", "application/x-image", "application/json",
                                             "application/x-npy"]
    metrics = json.loads((Path(trained_model_dir) / "metrics.json").read_text())
    props = package["CustomerMetadataProperties"]
    assert float(props["test_accuracy"]) == pytest.approx(metrics["test_accuracy"], rel=1e-5)
    statistics = package["ModelMetrics"]["ModelQuality"]["Statistics"]
    uri = S3Uri.parse(statistics["S3Uri"])
    assert json.loads(s3.get_object(Bucket=uri.bucket, Key=uri.key)["Body"].read()) == metrics
    assert [r["type"] for r in result.created] == ["model", "model_package_group", "model_package"]


def test_rerunning_with_the_same_names_reuses_everything(aws, archive):
    first, _ = _register(archive)
    second, created = _register(archive)
    sm = boto3.client("sagemaker")
    assert second.model_arn == first.model_arn and second.package_arn == first.package_arn
    assert second.created == [] and all(r["type"] == "s3_object" for r in created)
    assert len(sm.list_models()["Models"]) == 1
    assert len(sm.list_model_packages(ModelPackageGroupName="convlab-cnn")["ModelPackageSummaryList"]) == 1


def test_same_model_name_with_another_archive_is_refused_by_name(aws, archive):
    _register(archive)
    sm = boto3.client("sagemaker")
    with pytest.raises(RegistrationError) as caught:
        register.create_model(sm, "convlab-cnn-1", IMAGE, "s3://lab-artifacts/other/model.tar.gz", ROLE)
    assert "convlab-cnn-1" in str(caught.value) and "s3://lab-artifacts/other/model.tar.gz" in str(caught.value)


def test_missing_bucket_is_a_clear_error_unless_created(aws, archive):
    with pytest.raises(DeployError, match="bucket 'no-such-bucket' does not exist.*--create-bucket"):
        register.upload_archive(boto3.client("s3"), archive, S3Uri("no-such-bucket", "x"), False, "us-east-1")


def test_image_uri_given_or_resolved_through_the_sdk():
    assert register.resolve_image_uri(IMAGE, "eu-west-1", "2.21.0") == (IMAGE, "given")
    uri, source = register.resolve_image_uri(None, "eu-west-1", "2.21.0")
    repository, tag = uri.rsplit(":", 1)
    assert repository.endswith(".dkr.ecr.eu-west-1.amazonaws.com/tensorflow-inference")
    major, minor = (int(x) for x in tag.split("-")[0].split("."))
    assert (major, minor) <= (2, 21) and "cpu" in tag and "tensorflow" in source
    with pytest.raises(ImageUriError, match="--image-uri"):
        register.resolve_image_uri(None, "us-east-1", "0.9.0")
    with pytest.raises(ImageUriError, match="--image-uri"):
        register.resolve_image_uri(None, "us-east-1", None)


def test_register_command_prints_what_it_registered(aws, archive, capsys):
    code = cli.main(["register", "--archive", str(archive), "--bucket", "cli-bucket", "--create-bucket",
                     "--name", "cli-run", "--role", ROLE, "--image-uri", IMAGE, "--group", "cli-group"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    sm = boto3.client("sagemaker")
    assert printed["model_arn"] == sm.describe_model(ModelName="cli-run")["ModelArn"]
    assert printed["model_data_url"] == "s3://cli-bucket/convlab/cli-run/model.tar.gz"
    listed = sm.list_model_packages(ModelPackageGroupName="cli-group")["ModelPackageSummaryList"]
    assert [p["ModelPackageArn"] for p in listed] == [printed["package_arn"]]


def _retrained(trained_model_dir: Path, tmp_path: Path) -> Path:
    """The same model_dir with other metrics (as after retraining), packaged."""
    model_dir = tmp_path / "retrained"
    shutil.copytree(trained_model_dir, model_dir)
    metrics = json.loads((model_dir / "metrics.json").read_text())
    metrics["test_accuracy"] = 0.123
    (model_dir / "metrics.json").write_text(json.dumps(metrics))
    return build_archive(model_dir, tmp_path / "retrained.tar.gz")


def test_a_retrained_archive_under_the_same_name_registers_a_new_version(aws, archive, trained_model_dir,
                                                                          tmp_path):
    first, _ = _register(archive)
    retrained = _retrained(trained_model_dir, tmp_path)
    second, _ = _register(retrained)          # same name, so the same S3 URL, other bytes
    third, _ = _register(retrained)           # unchanged content: reused
    sm = boto3.client("sagemaker")

    assert second.package_arn != first.package_arn and third.package_arn == second.package_arn
    listed = sm.list_model_packages(ModelPackageGroupName="convlab-cnn")["ModelPackageSummaryList"]
    assert sorted(p["ModelPackageArn"] for p in listed) == sorted([first.package_arn, second.package_arn])
    old = sm.describe_model_package(ModelPackageName=first.package_arn)["CustomerMetadataProperties"]
    new = sm.describe_model_package(ModelPackageName=second.package_arn)["CustomerMetadataProperties"]
    assert old["archive_sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert new["archive_sha256"] == hashlib.sha256(retrained.read_bytes()).hexdigest()
    assert new["test_accuracy"] == "0.123" and old["test_accuracy"] != "0.123"
    assert second.model_arn == first.model_arn     # the model names the URL, which now holds the new bytes
