"""Transform reruns: the manifest beside the outputs says what produced each `.out` (model,
content type, accept, split), so a rerun with another model or option redoes it, a changed input
is redone whatever the clocks say, and an interrupted identical run resumes. Inputs and outputs
may share folders: outputs are told from inputs by the `.out` suffix and the manifest."""
from __future__ import annotations

import json
import os
import shutil
import time

import boto3
import pytest

from deploy import cli
from deploy.manifest import MANIFEST
from tests.fixtures_data import png_bytes

BUCKET = "manifest-lab"


def transform(capsys, *args: str) -> dict:
    code = cli.main(["transform", "--local", "--no-progress", *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    return json.loads(captured.out)


@pytest.fixture(scope="module")
def models(trained_model_dir, tmp_path_factory):
    """Two model_dirs: the trained one, and the same network with other class names."""
    root = tmp_path_factory.mktemp("models")
    first, second = root / "first", root / "second"
    shutil.copytree(trained_model_dir, first)
    shutil.copytree(trained_model_dir, second)
    labels = json.loads((second / "labels.json").read_text())
    (second / "labels.json").write_text(json.dumps([f"renamed-{name}" for name in labels]))
    return first, second


@pytest.fixture(scope="module")
def images(fashion_test_images):
    return [png_bytes(image) for image in fashion_test_images[0][:6]]


def write_inputs(folder, images, names=None):
    names = names or [f"img-{i}.png" for i in range(len(images))]
    for name, body in zip(names, images):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(body)
    return names


def label(path) -> str:
    return json.loads(path.read_bytes())["predictions"][0]["label"]


def test_a_rerun_with_another_model_or_accept_redoes_the_outputs(models, images, tmp_path, capsys):
    first, second = models
    source, out = tmp_path / "in", tmp_path / "out"
    names = write_inputs(source, images)
    common = ["--input", str(source), "--output", str(out)]
    assert transform(capsys, "--model-dir", str(first), *common)["written"] == 6
    again = transform(capsys, "--model-dir", str(first), *common)
    assert (again["written"], again["skipped"]) == (0, 6)
    renamed = transform(capsys, "--model-dir", str(second), *common)
    assert (renamed["written"], renamed["skipped"]) == (6, 0)
    assert all(label(out / f"{name}.out").startswith("renamed-") for name in names)
    as_csv = transform(capsys, "--model-dir", str(second), *common, "--accept", "text/csv")
    assert (as_csv["written"], as_csv["skipped"]) == (6, 0)
    assert not (out / f"{names[0]}.out").read_text().startswith("{")
    manifest = json.loads((out / MANIFEST).read_text())
    entry = manifest["outputs"][names[0]]
    assert manifest["producers"][entry["producer"]]["accept"] == "text/csv"
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST] + [f"{n}.out" for n in names])


def test_another_split_redoes_the_outputs(models, fashion_test_images, tmp_path, capsys):
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    rows = fashion_test_images[0][:4]
    (source / "rows.csv").write_text("\n".join(",".join(map(str, r.ravel())) for r in rows) + "\n")
    common = ["--model-dir", str(models[0]), "--input", str(source), "--output", str(out), "--accept", "text/csv"]
    assert transform(capsys, *common)["written"] == 1
    split = transform(capsys, *common, "--split-type", "Line", "--batch-strategy", "SingleRecord",
                      "--assemble-with", "Line")
    assert (split["written"], split["skipped"]) == (1, 0)
    assert len((out / "rows.csv.out").read_text().splitlines()) == 4


def test_a_changed_input_is_redone_whatever_the_clocks_say(models, images, tmp_path, capsys):
    source, out = tmp_path / "in", tmp_path / "out"
    names = write_inputs(source, images[:2])
    common = ["--model-dir", str(models[0]), "--input", str(source), "--output", str(out)]
    transform(capsys, *common)
    output = out / f"{names[0]}.out"
    before = output.read_bytes()
    (source / names[0]).write_bytes(images[5])
    stamp = output.stat().st_mtime
    os.utime(source / names[0], (stamp, stamp))  # a clock of coarse resolution: no newer than its output
    summary = transform(capsys, *common)
    assert (summary["written"], summary["skipped"]) == (1, 1)
    assert output.read_bytes() != before


def test_an_s3_input_replaced_within_the_second_of_its_output_is_redone(aws, models, images, capsys):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    common = ["--model-dir", str(models[0]), "--input", f"s3://{BUCKET}/in/", "--output", f"s3://{BUCKET}/out/"]
    for attempt in range(5):  # S3 times have one-second resolution: make the replacement share the second
        s3.put_object(Bucket=BUCKET, Key="in/a.png", Body=images[attempt])
        transform(capsys, *common)
        s3.put_object(Bucket=BUCKET, Key="in/a.png", Body=images[attempt + 1])
        output = s3.head_object(Bucket=BUCKET, Key="out/a.png.out")["LastModified"]
        if s3.head_object(Bucket=BUCKET, Key="in/a.png")["LastModified"] <= output:
            break
        time.sleep(0.5)
    else:
        pytest.fail("could not replace the input within the second its output was written")
    assert transform(capsys, *common)["written"] == 1


def test_an_input_folder_inside_the_output_folder_is_transformed(models, images, tmp_path, capsys):
    data = tmp_path / "data"
    names = write_inputs(data / "images", images[:3], ["a.png", "b/c.png", "photo.partial-1.png"])
    summary = transform(capsys, "--model-dir", str(models[0]), "--input", str(data / "images"),
                        "--output", str(data))
    assert (summary["inputs"], summary["written"]) == (3, 3)
    assert all((data / f"{name}.out").is_file() for name in names)
    again = transform(capsys, "--model-dir", str(models[0]), "--input", str(data / "images"), "--output", str(data))
    assert (again["inputs"], again["skipped"]) == (3, 3)


def test_inputs_and_outputs_in_one_folder_keep_inputs_named_like_partials(models, images, tmp_path, capsys):
    folder = tmp_path / "same"
    names = write_inputs(folder, images[:3], ["x.png", "photo.partial-1.png", "notes.out"])
    (folder / "notes.out").write_bytes(images[2])  # an input that happens to end in .out
    common = ["--model-dir", str(models[0]), "--input", str(folder), "--output", str(folder),
              "--content-type", "image/png"]
    first = transform(capsys, *common)
    assert (first["inputs"], first["written"]) == (3, 3)
    again = transform(capsys, *common)
    assert (again["inputs"], again["written"], again["skipped"]) == (3, 0, 3)
    assert all((folder / name).is_file() and (folder / f"{name}.out").is_file() for name in names)
    assert not (folder / "x.png.out.out").exists()


def test_an_output_folder_inside_the_input_folder_is_not_read_as_input(models, images, tmp_path, capsys):
    data = tmp_path / "data"
    write_inputs(data, images[:2])
    common = ["--model-dir", str(models[0]), "--input", str(data), "--output", str(data / "predictions")]
    assert transform(capsys, *common)["inputs"] == 2
    again = transform(capsys, *common)
    assert (again["inputs"], again["skipped"]) == (2, 2)


def test_s3_prefixes_inside_each_other_alike(aws, models, images, capsys):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    for index, body in enumerate(images[:2]):
        s3.put_object(Bucket=BUCKET, Key=f"data/images/{index}.partial-{index}.png", Body=body)
    common = ["--model-dir", str(models[0]), "--input", f"s3://{BUCKET}/data/images", "--output", f"s3://{BUCKET}/data"]
    assert transform(capsys, *common)["written"] == 2
    again = transform(capsys, *common)
    assert (again["inputs"], again["skipped"]) == (2, 2)
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="data/")["Contents"])
    assert keys == sorted([f"data/{MANIFEST}", "data/0.partial-0.png.out", "data/1.partial-1.png.out",
                           "data/images/0.partial-0.png", "data/images/1.partial-1.png"])
