"""The deploy chain against a live moto server that refuses operations as a lab account's policy
does: endpoint -> batch transform -> local, falling back on refusals only."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError

from deploy import cli
from deploy.errors import DeployError, SandboxError
from deploy.fallback import deploy
from deploy.manifest import MANIFEST
from deploy.smoke import as_json_image
from deploy.stores import LocalStore

from .fixtures_deploy import (IMAGE, N_IMAGES, PREDICTIONS, ROLE, archive, classes, expected_output,  # noqa: F401
                              handler, images_dir, no_serving_leftovers, options, write_outputs)

# The seed lab's console error, with this run's endpoint config name.
SEED_DENY = ("User: arn:aws:sts::123456789012:assumed-role/LabRole/SageMaker is not authorized to perform: "
             "sagemaker:CreateEndpointConfig on resource: arn:aws:sagemaker:us-east-1:123456789012:"
             "endpoint-config/lab-run-cfg with an explicit deny in an identity-based policy")


def endpoint_requests() -> list[bytes]:
    """The distinct request bodies the moto server's SageMaker Runtime received (it files them
    under no endpoint name)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sagemakerruntime.models import sagemakerruntime_backends

    backend = sagemakerruntime_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
    bodies = [json.loads(base64.b64decode(key))["Body"] for calls in backend.results.values() for key in calls]
    return [body.encode() if isinstance(body, str) else body for body in bodies]


def test_the_server_refuses_exactly_like_the_lab_account(aws, deny_operations):
    sm = boto3.client("sagemaker")
    sm.create_model(ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    variants = [{"VariantName": "AllTraffic", "ModelName": "m", "InitialInstanceCount": 1,
                 "InstanceType": "ml.m5.large"}]
    with deny_operations("CreateEndpointConfig"):
        with pytest.raises(ClientError) as caught:
            sm.create_endpoint_config(EndpointConfigName="lab-run-cfg", ProductionVariants=variants)
        assert caught.value.response["Error"] == {"Code": "AccessDeniedException", "Message": SEED_DENY}
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert sm.list_models()["Models"][0]["ModelName"] == "m"       # other operations still work
    sm.create_endpoint_config(EndpointConfigName="lab-run-cfg", ProductionVariants=variants)
    assert [c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]] == ["lab-run-cfg"]
    with pytest.raises(SandboxError, match="CreateEndpointConfg"):
        deny_operations("CreateEndpointConfg")


def test_endpoint_allowed_serves_from_the_endpoint(aws, archive, images_dir, handler, tmp_path):
    first = next(LocalStore(images_dir).items()).relative
    result = deploy(options(archive, images_dir, tmp_path))
    sm = boto3.client("sagemaker")
    assert result["served_by"] == "endpoint" and result["refusals"] == []
    smoke = result["predictions"]["smoke_invocation"]
    # The smoke request the endpoint received is the first input image, base64 in JSON: the
    # handler reads it as exactly that image and answers what it answers for the PNG itself.
    (received,) = endpoint_requests()
    png = (images_dir / first).read_bytes()
    np.testing.assert_array_equal(handler.decode(received, "application/json"), handler.decode(png, "image/png"))
    assert json.loads(handler.encode(handler.predict(handler.decode(received, "application/json")))[0]) == \
        expected_output(handler, images_dir, first)
    assert smoke["bytes_sent"] == len(received) == len(as_json_image(png))
    assert smoke["content_type"] == "application/json"
    assert sm.describe_endpoint(EndpointName="lab-run-ep")["EndpointStatus"] == "InService"
    assert sm.list_transform_jobs()["TransformJobSummaries"] == []
    written = json.loads(Path(result["result_path"]).read_text())
    assert written["served_by"] == "endpoint"

    assert cli.main(["cleanup", "--result", result["result_path"]]) == 0
    no_serving_leftovers(sm)
    assert sm.list_models()["Models"] == []


def test_endpoint_config_denied_falls_back_to_a_batch_transform_job(aws, deny_operations, archive,
                                                                    images_dir, handler, tmp_path):
    deny_operations("CreateEndpointConfig")
    write_outputs(handler, images_dir)    # what a working job writes; moto's write nothing
    result = deploy(options(archive, images_dir, tmp_path))
    sm = boto3.client("sagemaker")

    assert result["served_by"] == "transform"
    assert result["refusals"] == [{"step": "endpoint", "operation": "CreateEndpointConfig",
                                   "error_code": "AccessDeniedException", "message": SEED_DENY}]
    job = sm.describe_transform_job(TransformJobName="lab-run-tj")
    assert job["ModelName"] == "lab-run"
    assert job["TransformInput"] == {
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://lab-bucket/convlab/lab-run/inputs/"}},
        "ContentType": "application/x-image", "CompressionType": "None", "SplitType": "None"}
    assert job["TransformOutput"] == {"S3OutputPath": "s3://lab-bucket/convlab/lab-run/predictions/",
                                      "Accept": "application/json", "AssembleWith": "None"}
    assert job["BatchStrategy"] == "SingleRecord"
    assert job["TransformResources"] == {"InstanceType": "ml.m5.large", "InstanceCount": 1}
    uploaded = boto3.client("s3").list_objects_v2(Bucket="lab-bucket", Prefix="convlab/lab-run/inputs/")
    assert sorted(o["Key"][len("convlab/lab-run/inputs/"):] for o in uploaded["Contents"]) == \
        sorted(i.relative for i in LocalStore(images_dir).items())
    assert result["predictions"]["inputs"] == result["predictions"]["outputs"] == N_IMAGES
    assert result["predictions"]["output_objects"][0] == f"s3://lab-bucket/{PREDICTIONS}" + \
        sorted(i.relative for i in LocalStore(images_dir).items())[0] + ".out"
    no_serving_leftovers(sm)


def test_endpoint_denied_after_its_config_deletes_the_config_first(aws, deny_operations, archive,
                                                                   images_dir, handler, tmp_path):
    deny_operations("CreateEndpoint")
    write_outputs(handler, images_dir)
    result = deploy(options(archive, images_dir, tmp_path))
    assert result["served_by"] == "transform"
    assert [r["operation"] for r in result["refusals"]] == ["CreateEndpoint"]
    assert "sagemaker:CreateEndpoint on resource" in result["refusals"][0]["message"]
    deleted = [(d["resource"], d["status"]) for d in result["deleted"]]
    assert ("endpoint_config lab-run-cfg", "deleted") in deleted
    assert all(r["type"] != "endpoint_config" for r in result["resources"])
    no_serving_leftovers(boto3.client("sagemaker"))


def test_an_endpoint_quota_of_zero_falls_back_too(aws, deny_operations, archive, images_dir, handler, tmp_path):
    quota = ("The account-level service limit 'ml.m5.large for endpoint usage' is 0 Instances, with current "
             "utilization of 0 Instances and a request delta of 1 Instances. Please use AWS Service Quotas "
             "to request an increase for this quota.")
    deny_operations("CreateEndpoint", code="ResourceLimitExceeded", message=quota)
    write_outputs(handler, images_dir)
    result = deploy(options(archive, images_dir, tmp_path))
    assert result["served_by"] == "transform"
    assert result["refusals"] == [{"step": "endpoint", "operation": "CreateEndpoint",
                                   "error_code": "ResourceLimitExceeded", "message": quota}]
    no_serving_leftovers(boto3.client("sagemaker"))


def test_endpoint_and_transform_denied_run_the_transform_locally(aws, deny_operations, archive, images_dir,
                                                                 handler, tmp_path):
    deny_operations("CreateEndpointConfig", "CreateTransformJob")
    result = deploy(options(archive, images_dir, tmp_path))
    sm, s3 = boto3.client("sagemaker"), boto3.client("s3")

    assert result["served_by"] == "local"
    assert [(r["step"], r["operation"], r["error_code"]) for r in result["refusals"]] == [
        ("endpoint", "CreateEndpointConfig", "AccessDeniedException"),
        ("transform", "CreateTransformJob", "AccessDeniedException")]
    assert "explicit deny" in result["refusals"][1]["message"]
    prefix = PREDICTIONS
    assert result["predictions"]["s3_uri"] == f"s3://lab-bucket/{prefix}"
    listed = s3.list_objects_v2(Bucket="lab-bucket", Prefix=prefix)["Contents"]
    inputs = sorted(i.relative for i in LocalStore(images_dir).items())
    assert sorted(o["Key"][len(prefix):] for o in listed if not o["Key"].endswith(MANIFEST)) == \
        [f"{r}.out" for r in inputs]
    manifest = json.loads(s3.get_object(Bucket="lab-bucket", Key=prefix + MANIFEST)["Body"].read())
    assert sorted(manifest["outputs"]) == inputs  # what produced each output, for a rerun
    for relative in inputs:
        body = json.loads(s3.get_object(Bucket="lab-bucket", Key=f"{prefix}{relative}.out")["Body"].read())
        expected = expected_output(handler, images_dir, relative)
        assert body["predictions"][0]["class_index"] == expected["predictions"][0]["class_index"]
        assert body["predictions"][0]["probabilities"] == pytest.approx(
            expected["predictions"][0]["probabilities"], abs=1e-5)
    assert result["predictions"]["summary"]["written"] == N_IMAGES
    assert sm.list_transform_jobs()["TransformJobSummaries"] == []
    no_serving_leftovers(sm)


def test_a_non_permission_error_stops_without_fallback(aws, archive, images_dir, tmp_path):
    opts = options(archive, images_dir, tmp_path, instance_type="ml.bogus.xlarge")
    with pytest.raises(DeployError) as caught:
        deploy(opts)
    assert "CreateEndpointConfig failed: ValidationException" in str(caught.value)
    assert "ml.bogus.xlarge" in str(caught.value)
    written = json.loads((tmp_path / "work" / "lab-run" / "deploy-result.json").read_text())
    assert written["served_by"] is None and written["refusals"] == []
    assert [a["step"] for a in written["attempts"]] == ["endpoint"]
    assert written["attempts"][0]["status"] == "error" and "ValidationException" in written["error"]
    sm = boto3.client("sagemaker")
    assert sm.list_transform_jobs()["TransformJobSummaries"] == []
    no_serving_leftovers(sm)
    listed = boto3.client("s3").list_objects_v2(Bucket="lab-bucket", Prefix="convlab/lab-run/predictions/")
    assert listed["KeyCount"] == 0


def test_sandbox_deploy_reports_where_predictions_landed_and_their_accuracy(archive, images_dir, tmp_path, capsys,
                                                                            moto_server):
    code = cli.main(["deploy", "--sandbox", "--sandbox-deny", "CreateEndpointConfig,CreateTransformJob",
                     "--archive", str(archive), "--image-uri", IMAGE, "--input", str(images_dir),
                     "--name", "demo", "--work-dir", str(tmp_path), "--no-progress"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["served_by"] == "local"
    assert result["model_package"]["group"] == "convlab"          # registered on the way
    assert result["sandbox"]["denied"] == ["sagemaker:CreateEndpointConfig", "sagemaker:CreateTransformJob"]
    assert result["sandbox"]["endpoint_url"] != moto_server.endpoint_url
    copied = Path(result["predictions"]["copied_to"])
    assert len(list(copied.rglob("*.out"))) == N_IMAGES
    assert result["predictions"]["scored"] == N_IMAGES and result["predictions"]["accuracy"] > 0.5
    # The test session's own server is untouched by the sandbox run.
    import os
    assert os.environ["AWS_ENDPOINT_URL"] == moto_server.endpoint_url
    assert moto_server.denied() == []
