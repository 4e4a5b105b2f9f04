"""The two SageMaker ways to serve: a real-time endpoint, and a batch transform job.

Each step appends what it creates to `created` the moment it exists, so the chain can delete
it if the step is refused halfway (an endpoint config whose endpoint was refused, say).
"""
from __future__ import annotations

import base64
import logging
from typing import Any

from deploy.aws import S3Uri, call, failure_refusal_kind, list_objects, wait_until
from deploy.errors import DeployError, Refusal, StepFailed
from deploy.stores import OUT_SUFFIX

log = logging.getLogger(__name__)

SMOKE_PREVIEW = 2000


ENDPOINT_PENDING = {"Creating", "Updating", "SystemUpdating"}
TRANSFORM_PENDING = {"InProgress", "Stopping"}
MISSING_SHOWN = 20


def ended_badly(resource: str, status: str, reason: str, next_step: str) -> DeployError:
    """A Failed endpoint or job: a Refusal when SageMaker could not provide capacity, quota or the
    instance type (the account refuses it here), else a StepFailed that stops the chain."""
    if status == "Failed" and failure_refusal_kind(reason):
        return Refusal(resource, status, reason)
    return StepFailed(resource, status, reason or "no FailureReason given", next_step)


def endpoint_step(sm: Any, runtime: Any, *, model_name: str, endpoint_name: str, config_name: str,
                  instance_type: str, timeout_s: float, smoke_body: bytes, smoke_type: str,
                  created: list[dict[str, str]], poll_s: float = 30.0,
                  debug_hint: str = "run the model locally with `convlab serve --model-dir MODEL_DIR`"
                  ) -> dict[str, Any]:
    """CreateEndpointConfig + CreateEndpoint, wait InService, then one smoke invocation.

    An endpoint ending Failed stops with its FailureReason and `debug_hint` (unless the reason
    is capacity, quota or instance type: a Refusal); still Creating after `timeout_s` stops too."""
    call(sm, "CreateEndpointConfig", EndpointConfigName=config_name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": model_name, "InitialInstanceCount": 1,
        "InstanceType": instance_type, "InitialVariantWeight": 1.0}])
    created.append({"type": "endpoint_config", "name": config_name})
    call(sm, "CreateEndpoint", EndpointName=endpoint_name, EndpointConfigName=config_name)
    created.append({"type": "endpoint", "name": endpoint_name})
    log.info("waiting (at most %.0f s) for endpoint %s to be InService", timeout_s, endpoint_name)
    what = f"endpoint {endpoint_name}"
    reply = wait_until(lambda: call(sm, "DescribeEndpoint", EndpointName=endpoint_name), "EndpointStatus",
                       ENDPOINT_PENDING, what=what, timeout_s=timeout_s, poll_s=poll_s,
                       timeout_hint="raise --endpoint-timeout to wait longer")
    if reply["EndpointStatus"] != "InService":
        raise ended_badly(what, reply["EndpointStatus"], reply.get("FailureReason", ""),
                          f"see CloudWatch log group /aws/sagemaker/Endpoints/{endpoint_name}, and {debug_hint} "
                          "to see the error")
    reply = call(runtime, "InvokeEndpoint", EndpointName=endpoint_name, Body=smoke_body,
                 ContentType=smoke_type, Accept="application/json")
    body = reply["Body"].read()
    try:
        preview: str = body.decode("utf-8")[:SMOKE_PREVIEW]
    except UnicodeDecodeError:
        preview = "base64:" + base64.b64encode(body[:SMOKE_PREVIEW]).decode()
    log.info("endpoint %s answered the smoke invocation (%d bytes, %s)", endpoint_name, len(body),
             reply.get("ContentType"))
    return {"kind": "endpoint", "endpoint_name": endpoint_name,
            "invoke": f"aws sagemaker-runtime invoke-endpoint --endpoint-name {endpoint_name} "
                      "--content-type image/png --body fileb://IMAGE.png out.json",
            "smoke_invocation": {"content_type": smoke_type, "bytes_sent": len(smoke_body),
                                 "response_content_type": reply.get("ContentType"),
                                 "response": preview}}


def transform_parameters(*, job_name: str, model_name: str, input_uri: S3Uri, output_uri: S3Uri,
                         instance_type: str, content_type: str = "application/x-image",
                         accept: str = "application/json") -> dict[str, Any]:
    """CreateTransformJob arguments: one object per request, outputs named `<key>.out`."""
    return {
        "TransformJobName": job_name, "ModelName": model_name,
        "BatchStrategy": "SingleRecord", "MaxPayloadInMB": 6, "MaxConcurrentTransforms": 1,
        "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                                           "S3Uri": str(input_uri)}},
                           "ContentType": content_type, "SplitType": "None",
                           "CompressionType": "None"},
        "TransformOutput": {"S3OutputPath": str(output_uri), "Accept": accept, "AssembleWith": "None"},
        "TransformResources": {"InstanceType": instance_type, "InstanceCount": 1},
    }


def _relative_keys(s3: Any, input_uri: S3Uri) -> list[str]:
    """Every input object under `input_uri`, as the part of its key after the prefix."""
    return [obj["Key"][len(input_uri.key):].lstrip("/") for obj in list_objects(s3, input_uri)
            if not obj["Key"].endswith("/")]


def check_outputs(s3: Any, what: str, relatives: list[str], output_uri: S3Uri,
                  next_step: str) -> list[str]:
    """The output URI of every input (`<output>/<relative>.out`, as SageMaker names them); a
    StepFailed giving inputs, outputs and the missing keys when any is absent."""
    present = {obj["Key"] for obj in list_objects(s3, output_uri)}
    expected = [output_uri.child(relative + OUT_SUFFIX) for relative in relatives]
    missing = [str(uri) for uri in expected if uri.key not in present]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        found = len(expected) - len(missing)
        raise StepFailed(what, "Completed with missing outputs",
                         f"{found} of {len(expected)} outputs under {output_uri} (missing {shown})", next_step,
                         {"inputs": len(expected), "outputs": found, "missing": len(missing),
                          "missing_keys": missing[:MISSING_SHOWN]})
    return [str(uri) for uri in expected]


def transform_job_step(sm: Any, s3: Any, *, job_name: str, model_name: str, input_uri: S3Uri,
                       output_uri: S3Uri, instance_type: str, timeout_s: float,
                       created: list[dict[str, str]], poll_s: float = 30.0,
                       debug_hint: str = "run `convlab deploy transform --local` on the same inputs",
                       timeout_flag: str = "--transform-timeout") -> dict[str, Any]:
    """CreateTransformJob over an S3 prefix of images, wait, then check that every input has its
    `<key>.out`. Failed, stopped, timed out or short of outputs: a StepFailed naming the numbers."""
    relatives = _relative_keys(s3, input_uri)
    call(sm, "CreateTransformJob", **transform_parameters(
        job_name=job_name, model_name=model_name, input_uri=input_uri, output_uri=output_uri,
        instance_type=instance_type))
    created.append({"type": "transform_job", "name": job_name})
    what = f"transform job {job_name}"
    log.info("waiting (at most %.0f s) for %s", timeout_s, what)
    described = wait_until(lambda: call(sm, "DescribeTransformJob", TransformJobName=job_name),
                           "TransformJobStatus", TRANSFORM_PENDING, what=what, timeout_s=timeout_s, poll_s=poll_s,
                           timeout_hint=f"raise {timeout_flag} to wait longer")
    status = described["TransformJobStatus"]
    logs = f"see CloudWatch log group /aws/sagemaker/TransformJobs (stream {job_name}/...), and {debug_hint}"
    if status != "Completed":
        reason = described.get("FailureReason") or ("stopped outside this deploy" if status == "Stopped" else "")
        raise ended_badly(what, status, reason, logs)
    outputs = check_outputs(s3, what, relatives, output_uri, logs)
    log.info("%s wrote all %d outputs under %s", what, len(outputs), output_uri)
    return {"kind": "transform_job", "transform_job_name": job_name, "status": status,
            "s3_uri": str(output_uri), "inputs": len(relatives), "outputs": len(outputs),
            "output_objects": outputs[:20]}
