"""What stops the deploy chain and what falls back, against the live moto server.

Falls back (the account refuses the step): an explicit deny, a quota, an instance type not
offered, no capacity. Stops with the resource's FailureReason and what to do next: an endpoint
or transform job ending Failed, a wait that times out, a transform job whose outputs are
missing. Endpoints and jobs are made to end Failed in the server's own state (fail_created), so
boto3 reads the status and FailureReason over HTTP as it would from SageMaker.
"""
from __future__ import annotations

import json

import boto3
import pytest

from deploy import cli
from deploy.errors import AwsCallError, StepFailed
from deploy.fallback import deploy
from deploy.stores import LocalStore

from .fixtures_deploy import (IMAGE, N_IMAGES, PREDICTIONS, ROLE, archive, classes, handler,  # noqa: F401
                              images_dir, no_serving_leftovers, options, write_outputs)

PING_FAILED = ("The primary container for production variant AllTraffic did not pass the ping health check. "
               "Please check CloudWatch logs for this endpoint.")
NO_CAPACITY = ("Unable to provision requested ML compute capacity. Please retry using a different ML "
               "instance type.")
JOB_FAILED = "AlgorithmError: the container exited with code 1. Check the CloudWatch logs for the job."


def written_result(tmp_path) -> dict:
    return json.loads((tmp_path / "work" / "lab-run" / "deploy-result.json").read_text())


def test_transform_job_that_writes_no_outputs_is_a_failure_with_numbers(aws, deny_operations, archive,
                                                                       images_dir, tmp_path):
    deny_operations("CreateEndpointConfig")
    with pytest.raises(StepFailed) as caught:
        deploy(options(archive, images_dir, tmp_path))
    assert f"0 of {N_IMAGES} outputs under s3://lab-bucket/{PREDICTIONS}" in str(caught.value)
    result = written_result(tmp_path)
    assert result["served_by"] is None and result["predictions"] is None
    assert [(a["step"], a["status"]) for a in result["attempts"]] == [("endpoint", "refused"),
                                                                      ("transform", "failed")]
    failure = result["failure"]
    assert (failure["step"], failure["resource"], failure["status"]) == (
        "transform", "transform job lab-run-tj", "Completed with missing outputs")
    assert (failure["inputs"], failure["outputs"], failure["missing"]) == (N_IMAGES, 0, N_IMAGES)
    first = sorted(i.relative for i in LocalStore(images_dir).items())[0]
    assert failure["missing_keys"][0] == f"s3://lab-bucket/{PREDICTIONS}{first}.out"
    assert "convlab deploy transform --local" in failure["next_step"]
    assert "transform job lab-run-tj" in result["error"]


def test_transform_job_short_of_outputs_names_exactly_the_missing_keys(aws, deny_operations, archive,
                                                                      images_dir, handler, tmp_path):
    deny_operations("CreateEndpointConfig")
    done = write_outputs(handler, images_dir, only=N_IMAGES - 3)
    with pytest.raises(StepFailed, match=f"{N_IMAGES - 3} of {N_IMAGES} outputs"):
        deploy(options(archive, images_dir, tmp_path))
    failure = written_result(tmp_path)["failure"]
    missing = sorted(set(i.relative for i in LocalStore(images_dir).items()) - set(done))
    assert failure["missing_keys"] == [f"s3://lab-bucket/{PREDICTIONS}{r}.out" for r in missing]
    assert (failure["outputs"], failure["missing"]) == (N_IMAGES - 3, 3)


def test_endpoint_that_fails_to_load_the_model_stops_the_chain(aws, fail_created, archive, images_dir, tmp_path):
    fail_created("CreateEndpoint", PING_FAILED)
    with pytest.raises(StepFailed) as caught:
        deploy(options(archive, images_dir, tmp_path))
    assert str(caught.value).startswith(f"endpoint lab-run-ep ended Failed: {PING_FAILED}; next: ")
    result = written_result(tmp_path)
    assert result["refusals"] == [] and [a["status"] for a in result["attempts"]] == ["failed"]
    assert result["failure"]["reason"] == PING_FAILED
    assert "/aws/sagemaker/Endpoints/lab-run-ep" in result["failure"]["next_step"]
    assert "convlab serve --model-dir" in result["failure"]["next_step"]
    sm = boto3.client("sagemaker")
    assert sm.list_transform_jobs()["TransformJobSummaries"] == []          # no fallback
    no_serving_leftovers(sm)                                                # the failed endpoint is deleted


def test_transform_job_ending_failed_stops_without_local_mode(aws, deny_operations, fail_created, archive,
                                                             images_dir, tmp_path):
    deny_operations("CreateEndpointConfig")
    fail_created("CreateTransformJob", JOB_FAILED)
    with pytest.raises(StepFailed, match="transform job lab-run-tj ended Failed: AlgorithmError"):
        deploy(options(archive, images_dir, tmp_path))
    result = written_result(tmp_path)
    assert [a["step"] for a in result["attempts"]] == ["endpoint", "transform"]
    assert result["failure"]["reason"] == JOB_FAILED
    listed = boto3.client("s3").list_objects_v2(Bucket="lab-bucket", Prefix=PREDICTIONS)
    assert listed["KeyCount"] == 0                                          # local mode never ran


def test_endpoint_still_creating_times_out_and_stops(aws, fail_created, archive, images_dir, tmp_path):
    fail_created("CreateEndpoint", "", status="Creating")
    with pytest.raises(StepFailed) as caught:
        deploy(options(archive, images_dir, tmp_path, endpoint_timeout_s=2, poll_s=0.5))
    assert "endpoint lab-run-ep ended TimedOut: still Creating after 2 s" in str(caught.value)
    assert "--endpoint-timeout" in str(caught.value)
    assert written_result(tmp_path)["failure"]["timeout_s"] == 2
    assert boto3.client("sagemaker").list_transform_jobs()["TransformJobSummaries"] == []


def test_endpoint_failed_for_capacity_falls_back(aws, fail_created, archive, images_dir, handler, tmp_path):
    fail_created("CreateEndpoint", NO_CAPACITY)
    write_outputs(handler, images_dir)
    result = deploy(options(archive, images_dir, tmp_path))
    assert result["served_by"] == "transform"
    assert result["refusals"] == [{"step": "endpoint", "operation": "endpoint lab-run-ep", "error_code": "Failed",
                                   "message": NO_CAPACITY}]
    no_serving_leftovers(boto3.client("sagemaker"))


@pytest.mark.parametrize("code,message", [
    ("ValidationException", "The instance type ml.m5.large is not supported in region us-east-1 for endpoints."),
    ("InsufficientCapacityError", "There is not enough capacity for ml.m5.large in us-east-1."),
    ("AccessDenied", "Access Denied"),
])
def test_each_refusal_class_at_the_call_falls_back(aws, deny_operations, archive, images_dir, handler, tmp_path,
                                                   code, message):
    deny_operations("CreateEndpointConfig", code=code, message=message)
    write_outputs(handler, images_dir)
    result = deploy(options(archive, images_dir, tmp_path))
    assert result["served_by"] == "transform"
    assert result["refusals"][0]["error_code"] == code and result["refusals"][0]["message"] == message


def test_a_validation_error_that_is_not_about_the_instance_type_stops(aws, deny_operations, archive, images_dir,
                                                                     tmp_path):
    deny_operations("CreateEndpointConfig", code="ValidationException",
                    message="Could not find model data at s3://lab-bucket/convlab/lab-run/model.tar.gz.")
    with pytest.raises(AwsCallError, match="CreateEndpointConfig failed: ValidationException: Could not find"):
        deploy(options(archive, images_dir, tmp_path))
    assert written_result(tmp_path)["refusals"] == []


def test_an_http_403_without_a_refusal_code_stops(aws, deny_operations, archive, images_dir, tmp_path):
    """A 403 is not an account refusal by itself: bad or expired credentials are answered 403 too,
    and another way to serve would fail the same. Only the refusal codes fall back."""
    deny_operations("CreateEndpointConfig", code="UnrecognizedClientException", status=403,
                    message="The security token included in the request is invalid.")
    with pytest.raises(AwsCallError, match="CreateEndpointConfig failed: UnrecognizedClientException"):
        deploy(options(archive, images_dir, tmp_path))
    assert written_result(tmp_path)["refusals"] == []


def test_deploy_command_says_in_one_line_why_it_stopped(aws, deny_operations, archive, images_dir, tmp_path,
                                                        capsys):
    deny_operations("CreateEndpointConfig")
    code = cli.main(["deploy", "--archive", str(archive), "--image-uri", IMAGE, "--bucket", "lab-bucket",
                     "--create-bucket", "--name", "lab-run", "--role", ROLE, "--input", str(images_dir),
                     "--work-dir", str(tmp_path / "work"), "--poll", "1", "--transform-timeout", "5",
                     "--no-progress"])
    printed = capsys.readouterr()
    assert code == 1 and printed.out == ""
    lines = printed.err.strip().splitlines()
    assert lines[-1].startswith("convlab deploy deploy: transform job lab-run-tj ended Completed with missing "
                                f"outputs: 0 of {N_IMAGES} outputs")
    assert written_result(tmp_path)["failure"]["outputs"] == 0
