"""Local batch transform on S3 images: 500 real Fashion-MNIST test images as PNG under nested
prefixes of a live moto S3, the serving handler in process, `<key>.out` per image."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from deploy import cli
from deploy.manifest import MANIFEST
from deploy.package import build_archive, extract_archive
from deploy.score import class_folder, predicted_class, true_class
from deploy.transform import Handler
from tests.fixtures_data import png_bytes

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "transform-lab"


@pytest.fixture(scope="module")
def model_dir(trained_model_dir, tmp_path_factory) -> Path:
    archive = build_archive(trained_model_dir, tmp_path_factory.mktemp("transform") / "model.tar.gz")
    return extract_archive(archive, tmp_path_factory.mktemp("transform-model"))


@pytest.fixture(scope="module")
def classes(model_dir) -> list[str]:
    return json.loads((model_dir / "labels.json").read_text())


@pytest.fixture(scope="module")
def pngs(fashion_test_images, classes) -> dict[str, bytes]:
    """500 keys -> PNG bytes, nested two ways: <batch>/<class folder>/<n>.png."""
    images, labels = fashion_test_images
    assert len(images) == 500
    return {f"shard-{i % 3}/{class_folder(classes[int(label)])}/img-{i:04d}.png": png_bytes(image)
            for i, (image, label) in enumerate(zip(images, labels))}


def upload(pngs: dict[str, bytes], prefix: str) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    for key, body in pngs.items():
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}{key}", Body=body)


def outputs(prefix: str) -> dict[str, bytes]:
    """The objects under an output prefix but the transform's manifest (deploy/manifest.py)."""
    s3 = boto3.client("s3")
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for obj in page.get("Contents", []):
            found[obj["Key"][len(prefix):]] = s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()
    manifest = found.pop(MANIFEST, None)
    assert manifest is None or set(json.loads(manifest)["outputs"]) >= {key[:-len(".out")] for key in found}
    return found


def transform(*extra: str, capsys, failed: int = 0) -> dict:
    """Run the CLI; it exits 0 only when no object failed, and then says how many did."""
    code = cli.main(["transform", "--local", "--no-progress", *extra])
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    if failed:
        last = captured.err.strip().splitlines()[-1]
        assert code == 1 and f"{failed} of {summary['inputs']} objects failed ({summary['written']} written" in last
    else:
        assert code == 0, captured.err[-2000:]
    assert summary["failed"] == failed
    return summary


def test_every_image_gets_the_handlers_prediction(aws, model_dir, pngs, classes, capsys):
    upload(pngs, "images/")
    summary = transform("--model-dir", str(model_dir), "--input", f"s3://{BUCKET}/images/",
                        "--output", f"s3://{BUCKET}/predictions/", "--batch-size", "64", capsys=capsys)
    assert (summary["inputs"], summary["written"], summary["failed"], summary["skipped"]) == (500, 500, 0, 0)
    assert summary["images_per_second"] > 0

    written = outputs("predictions/")
    assert sorted(written) == sorted(f"{key}.out" for key in pngs)
    handler = Handler(model_dir)
    correct = 0
    for key, body in pngs.items():
        got = json.loads(written[f"{key}.out"])["predictions"][0]
        # The same image through the handler on its own, as the server would answer it.
        alone = json.loads(handler.encode(handler.predict(handler.decode(body, "image/png")))[0])["predictions"][0]
        assert got["class_index"] == alone["class_index"] and got["label"] == alone["label"]
        assert got["probabilities"] == pytest.approx(alone["probabilities"], abs=1e-5)
        correct += predicted_class(written[f"{key}.out"]) == true_class(key, classes)
    accuracy = correct / len(pngs)
    assert accuracy > 0.5, f"accuracy {accuracy:.3f} (chance is 0.1)"


def test_interrupted_run_resumes_with_no_missing_and_no_duplicate_outputs(aws, moto_server, model_dir, pngs,
                                                                         capsys):
    upload(pngs, "in/")
    command = [sys.executable, str(ROOT / "scripts" / "transform.py"), "--local", "--no-progress",
               "--model-dir", str(model_dir), "--input", f"s3://{BUCKET}/in/", "--output", f"s3://{BUCKET}/out/",
               "--batch-size", "1", "--workers", "1"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    s3 = boto3.client("s3")
    deadline = time.monotonic() + 60
    done_before_kill = 0
    while process.poll() is None and time.monotonic() < deadline:
        done_before_kill = s3.list_objects_v2(Bucket=BUCKET, Prefix="out/").get("KeyCount", 0)
        if done_before_kill >= 25:
            process.send_signal(signal.SIGKILL)     # no chance to clean up: a hard interruption
            break
        time.sleep(0.02)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, "the transform finished before it could be interrupted"
    interrupted = outputs("out/")
    assert 25 <= len(interrupted) < 500
    for key, body in interrupted.items():          # whatever exists is complete
        assert key.endswith(".out") and json.loads(body)["predictions"][0]["label"]

    summary = transform("--model-dir", str(model_dir), "--input", f"s3://{BUCKET}/in/",
                        "--output", f"s3://{BUCKET}/out/", capsys=capsys)
    assert summary["skipped"] == len(interrupted)
    assert summary["skipped"] + summary["written"] == 500 and summary["failed"] == 0
    final = outputs("out/")
    assert sorted(final) == sorted(f"{key}.out" for key in pngs)   # no missing, no extra, no partial

    again = transform("--model-dir", str(model_dir), "--input", f"s3://{BUCKET}/in/",
                      "--output", f"s3://{BUCKET}/out/", capsys=capsys)
    assert (again["skipped"], again["written"]) == (500, 0)


def test_a_non_image_object_is_reported_and_the_rest_are_done(aws, model_dir, pngs, capsys):
    few = dict(list(pngs.items())[:30])
    upload(few, "mixed/")
    s3 = boto3.client("s3")
    s3.put_object(Bucket=BUCKET, Key="mixed/notes/readme.txt", Body=b"these are not pixels")
    s3.put_object(Bucket=BUCKET, Key="mixed/shard-0/Bag/broken.png", Body=b"\x89PNG\r\n\x1a\n truncated")
    summary = transform("--model-dir", str(model_dir), "--input", f"s3://{BUCKET}/mixed/",
                        "--output", f"s3://{BUCKET}/mixed-out/", capsys=capsys, failed=2)
    assert (summary["inputs"], summary["written"], summary["failed"]) == (32, 30, 2)
    failures = {f["key"]: f for f in summary["failures"]}
    assert set(failures) == {"notes/readme.txt", "shard-0/Bag/broken.png"}
    for failure in failures.values():
        assert failure["stage"] == "decode" and failure["status"] == 400 and failure["error"]
    assert sorted(outputs("mixed-out/")) == sorted(f"{key}.out" for key in few)


def test_the_same_command_works_on_local_folders(model_dir, pngs, tmp_path, capsys):
    source = tmp_path / "images"
    for key, body in list(pngs.items())[:60]:
        (source / key).parent.mkdir(parents=True, exist_ok=True)
        (source / key).write_bytes(body)
    summary_path = tmp_path / "summary.json"
    summary = transform("--model-dir", str(model_dir), "--input", str(source), "--output", str(tmp_path / "out"),
                        "--summary", str(summary_path), capsys=capsys)
    assert summary["written"] == 60 and json.loads(summary_path.read_text()) == summary
    produced = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*")
                      if p.is_file() and p.name != MANIFEST)
    assert produced == sorted(f"{key}.out" for key in list(pngs)[:60])


def test_missing_input_prefix_is_a_clear_error(aws, model_dir, capsys):
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    code = cli.main(["transform", "--local", "--model-dir", str(model_dir), "--input", f"s3://{BUCKET}/nothing/",
                     "--output", f"s3://{BUCKET}/o/"])
    assert code == 1
    assert f"no input objects under s3://{BUCKET}/nothing/" in capsys.readouterr().err


def test_an_s3_key_climbing_out_of_a_local_output_folder_is_refused(aws, model_dir, pngs, tmp_path, capsys):
    few = dict(list(pngs.items())[:5])
    upload(few, "climb/")
    s3 = boto3.client("s3")
    s3.put_object(Bucket=BUCKET, Key="climb/../../escaped.png", Body=next(iter(few.values())))
    out = tmp_path / "deep" / "out"
    summary = transform("--model-dir", str(model_dir), "--input", f"s3://{BUCKET}/climb/", "--output", str(out),
                        capsys=capsys, failed=1)
    assert (summary["written"], summary["failed"]) == (5, 1)
    failure = summary["failures"][0]
    assert failure["key"] == "../../escaped.png" and failure["stage"] == "write"
    assert "points outside the folder" in failure["error"]
    assert not list(tmp_path.rglob("escaped.png.out"))


def test_an_archive_is_not_served_with_files_left_by_an_earlier_one(trained_model_dir, pngs, tmp_path, capsys,
                                                                    monkeypatch):
    import shutil

    without_onnx = tmp_path / "model-without-onnx"
    shutil.copytree(trained_model_dir, without_onnx, ignore=shutil.ignore_patterns("model.onnx"))
    first = build_archive(trained_model_dir, tmp_path / "first.tar.gz")
    second = build_archive(without_onnx, tmp_path / "second.tar.gz", convert_onnx=False)
    source = tmp_path / "images"
    source.mkdir()
    for index, body in enumerate(list(pngs.values())[:3]):
        (source / f"{index}.png").write_bytes(body)
    monkeypatch.chdir(tmp_path)
    extracted = tmp_path / "work" / "deploy" / "transform-model"
    transform("--archive", str(first), "--input", str(source), "--output", str(tmp_path / "out1"), capsys=capsys)
    assert (extracted / "model.onnx").is_file()
    summary = transform("--archive", str(second), "--input", str(source), "--output", str(tmp_path / "out2"),
                        capsys=capsys)
    assert summary["written"] == 3
    assert not (extracted / "model.onnx").exists(), "the first archive's model.onnx would be served"


def test_a_local_folder_is_listed_in_path_order_and_written_whole(tmp_path):
    from deploy.stores import LocalStore

    root = tmp_path / "in"
    names = ["a.png", "a/x.png", "a-b/x.png", "b/c/d.png", "b/a.png", "z.png"]
    for name in names + ["z.png.out.partial-12-34"]:  # what an interrupted write of z.png.out leaves
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(name.encode())
    (root / "b" / "c" / "loop").symlink_to(root / "b")  # a folder linked into itself is walked once
    listed = [item.relative for item in LocalStore(root).items()]
    assert listed == sorted(names, key=lambda name: Path(name).parts)
    assert listed[:3] == ["a/x.png", "a-b/x.png", "a.png"]
    assert LocalStore(root).read("b/c/d.png") == b"b/c/d.png"

    out = LocalStore(tmp_path / "out")
    out.write("deep/er/k.png.out", b"x" * 70000, "application/json")
    out.write("deep/er/k.png.out", b"second", "application/json")  # replaces the whole file
    assert (tmp_path / "out" / "deep" / "er" / "k.png.out").read_bytes() == b"second"
    (tmp_path / "out" / "file").write_bytes(b"")
    with pytest.raises(OSError):
        out.write("file/under-a-file.out", b"x", "application/json")
    assert [p.name for p in (tmp_path / "out").rglob("*") if ".partial-" in p.name] == []
