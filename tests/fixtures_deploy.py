"""Fixtures and helpers shared by the deploy chain tests (imported by name where used).

    archive      module: model.tar.gz of the session's trained CNN
    classes      module: its class names
    images_dir   module: N_IMAGES Fashion-MNIST test images as PNGs, one folder per class
    handler      module: the serving handler on the extracted archive
    options()    DeployOptions for a run named lab-run into s3://lab-bucket/convlab/lab-run/
    write_outputs()  what a transform job that works writes: the handler's `<key>.out` answers
"""
from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from deploy.aws import S3Uri
from deploy.fallback import DeployOptions
from deploy.package import build_archive, extract_archive
from deploy.score import write_image_folder
from deploy.stores import LocalStore, S3Store
from deploy.transform import Handler, content_type_for, run_transform

ROLE = "arn:aws:iam::123456789012:role/LabRole"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/convlab:latest"
N_IMAGES = 40
BUCKET = "lab-bucket"
PREDICTIONS = "convlab/lab-run/predictions/"


@pytest.fixture(scope="module")
def archive(trained_model_dir, tmp_path_factory) -> Path:
    return build_archive(trained_model_dir, tmp_path_factory.mktemp("fallback") / "model.tar.gz")


@pytest.fixture(scope="module")
def classes(trained_model_dir) -> list[str]:
    return json.loads((Path(trained_model_dir) / "labels.json").read_text())


@pytest.fixture(scope="module")
def images_dir(fashion_test_images, classes, tmp_path_factory) -> Path:
    images, labels = fashion_test_images
    root = tmp_path_factory.mktemp("deploy-inputs")
    write_image_folder(images[:N_IMAGES], labels[:N_IMAGES], classes, root)
    return root


@pytest.fixture(scope="module")
def handler(archive, tmp_path_factory) -> Handler:
    return Handler(extract_archive(archive, tmp_path_factory.mktemp("handler-model")))


def expected_output(handler: Handler, images_dir: Path, relative: str) -> dict:
    """What the handler answers for one input on its own."""
    body = (images_dir / relative).read_bytes()
    encoded, _ = handler.encode(handler.predict(handler.decode(body, content_type_for(relative))))
    return json.loads(encoded)


def options(archive: Path, images_dir: Path, tmp_path: Path, **overrides) -> DeployOptions:
    values = dict(name="lab-run", artifacts=S3Uri(BUCKET, "convlab/lab-run"), role_arn=ROLE,
                  archive=archive, image_uri=IMAGE, input=str(images_dir), create_bucket=True,
                  poll_s=1, endpoint_timeout_s=10, transform_timeout_s=10, progress=False,
                  work_dir=tmp_path / "work")
    values.update(overrides)
    return DeployOptions(**values)


def write_outputs(handler: Handler, images_dir: Path, only: int | None = None) -> list[str]:
    """Write the handler's answer for the first `only` inputs (all when None) where a transform
    job over them writes its outputs (moto's jobs complete without writing any); return the
    relative input paths written."""
    s3 = boto3.client("s3")
    if BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=BUCKET)
    source = LocalStore(images_dir)
    relatives = sorted(i.relative for i in source.items())[:only]
    chosen = images_dir.parent / f"{images_dir.name}-subset-{len(relatives)}"
    for relative in relatives:
        (chosen / relative).parent.mkdir(parents=True, exist_ok=True)
        (chosen / relative).write_bytes((images_dir / relative).read_bytes())
    summary = run_transform(LocalStore(chosen), S3Store(S3Uri(BUCKET, PREDICTIONS), s3), handler, progress=False)
    assert summary.as_dict()["written"] == len(relatives)
    return relatives


def no_serving_leftovers(sm) -> None:
    assert sm.list_endpoints()["Endpoints"] == []
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []
