"""The two SageMaker ways to serve: a real-time endpoint, and a batch transform job.

Each step appends what it creates to `created` the moment it exists, so the chain can delete
it if the step is refused halfway (an endpoint config whose endpoint was refused, say).
"""
from __future__ import annotations

import base64
import logging
from typing import Any

from deploy.aws import S3Uri, call, list_objects, wait
from deploy.errors import DeployError
from deploy.stores import OUT_SUFFIX

log = logging.getLogger(__name__)

SMOKE_PREVIEW = 2000


def _endpoint_status(reply: dict[str, Any]) -> tuple[str, str]:
    return reply.get("EndpointStatus", "unknown"), reply.get("FailureReason", "")


def _transform_status(reply: dict[str, Any]) -> tuple[str, str]:
    return reply.get("TransformJobStatus", "unknown"), reply.get("FailureReason", "")


def endpoint_step(sm: Any, runtime: Any, *, model_name: str, endpoint_name: str, config_name: str,
                  instance_type: str, timeout_s: float, smoke_body: bytes, smoke_type: str,
                  created: list[dict[str, str]], poll_s: float = 30.0) -> dict[str, Any]:
    """CreateEndpointConfig + CreateEndpoint, wait InService, then one smoke invocation."""
    call(sm, "CreateEndpointConfig", EndpointConfigName=config_name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": model_name, "InitialInstanceCount": 1,
        "InstanceType": instance_type, "InitialVariantWeight": 1.0}])
    created.append({"type": "endpoint_config", "name": config_name})
    call(sm, "CreateEndpoint", EndpointName=endpoint_name, EndpointConfigName=config_name)
    created.append({"type": "endpoint", "name": endpoint_name})
    log.info("waiting (at most %.0f s) for endpoint %s to be InService", timeout_s, endpoint_name)
    wait(sm, "endpoint_in_service", "CreateEndpoint", timeout_s, _endpoint_status, delay_s=poll_s,
         EndpointName=endpoint_name)
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


def transform_job_step(sm: Any, s3: Any, *, job_name: str, model_name: str, input_uri: S3Uri,
                       output_uri: S3Uri, instance_type: str, timeout_s: float,
                       created: list[dict[str, str]], poll_s: float = 30.0) -> dict[str, Any]:
    """CreateTransformJob over an S3 prefix of images, wait, then list the `.out` objects."""
    inputs = sum(1 for obj in list_objects(s3, input_uri) if not obj["Key"].endswith("/"))
    call(sm, "CreateTransformJob", **transform_parameters(
        job_name=job_name, model_name=model_name, input_uri=input_uri, output_uri=output_uri,
        instance_type=instance_type))
    created.append({"type": "transform_job", "name": job_name})
    log.info("waiting (at most %.0f s) for transform job %s", timeout_s, job_name)
    wait(sm, "transform_job_completed_or_stopped", "CreateTransformJob", timeout_s, _transform_status,
         delay_s=poll_s, TransformJobName=job_name)
    described = call(sm, "DescribeTransformJob", TransformJobName=job_name)
    status = described["TransformJobStatus"]
    outputs = [f"s3://{output_uri.bucket}/{obj['Key']}" for obj in list_objects(s3, output_uri)
               if obj["Key"].endswith(OUT_SUFFIX)]
    if status != "Completed":
        raise DeployError(f"transform job {job_name} ended {status}: {described.get('FailureReason') or 'stopped'}"
                          " (it was stopped outside this deploy)")
    if len(outputs) < inputs:
        log.warning("transform job %s is %s but wrote %d outputs for %d inputs under %s",
                    job_name, status, len(outputs), inputs, output_uri)
    return {"kind": "transform_job", "transform_job_name": job_name, "status": status,
            "s3_uri": str(output_uri), "inputs": inputs, "outputs": len(outputs),
            "output_objects": outputs[:20]}
