"""Photos as people take them, through every serving path of the real server over real sockets:
POST /invocations, the try-it page's /explain, batch transform against the server, and the deploy
chain's local fallback; degenerate images; and the handler's edges found under AWS's toolkit."""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from convlab.photos import photo_like, png_tile
from inference.local import LocalServer, invoke, request
from inference.preprocessing import MAX_BATCH_VALUES
from tests.test_page import CANVAS_VARIANCE, _wait_state, browser  # noqa: F401

COUNT = 60
OFF = {"X-Amzn-SageMaker-Custom-Attributes": "photo_mapping=off"}


@pytest.fixture(scope="module")
def server(trained_model_dir, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("photo-server") / "server.log"
    with LocalServer(trained_model_dir, args=["--max-payload-mb", "100"], log_path=log_path) as running:
        yield running
        code = running.stop()
    assert code == 0, running.log_text()[-2000:]


@pytest.fixture(scope="module")
def photos(fashion_test_images):
    images, labels = fashion_test_images
    return [photo_like(image, 3, index) for index, image in enumerate(images[:COUNT])], labels[:COUNT]


def post(port, body, content_type, headers=None):
    status, answer_headers, payload = request(port, "POST", "/invocations", body,
                                              {"Content-Type": content_type, **(headers or {})})
    return status, answer_headers, payload


def predicted(port, bodies, content_type, headers=None) -> tuple[np.ndarray, list[dict]]:
    classes, inputs = [], []
    for body in bodies:
        status, _, payload = post(port, body, content_type, headers)
        assert status == 200, payload[:300]
        document = json.loads(payload)
        classes.append(document["predictions"][0]["class_index"])
        inputs.append(document["input"])
    return np.asarray(classes), inputs


def test_a_photo_is_mapped_and_the_answer_says_how(server, photos, fashion_test_images):
    bodies, labels = photos
    mapped, inputs = predicted(server.port, bodies, "image/jpeg")
    unmapped, off = predicted(server.port, bodies, "image/jpeg", OFF)
    plain, plain_inputs = predicted(server.port, [png_tile(i) for i in fashion_test_images[0][:COUNT]], "image/png")
    accuracy = {name: float(np.mean(found == labels)) for name, found in
                (("mapped", mapped), ("unmapped", unmapped), ("plain", plain))}
    assert accuracy["mapped"] >= 0.8 * accuracy["plain"], accuracy
    assert accuracy["unmapped"] < accuracy["mapped"] - 0.2, accuracy
    steps = inputs[0]["photo_mapping"].split("+")
    assert {"grayscale", "crop", "centre", "resize", "negate"} <= set(steps), inputs[0]
    assert {i["photo_mapping"] for i in off} == {"off"}
    assert {i["photo_mapping"] for i in plain_inputs} == {"unchanged"}
    status, headers, _ = post(server.port, bodies[0], "image/jpeg", {"X-Amzn-SageMaker-Custom-Attributes": "trace_id=7"})
    assert status == 200
    attributes = headers["x-amzn-sagemaker-custom-attributes"]
    assert attributes.startswith("trace_id=7,photo_mapping=") and "negate" in attributes and "scaling=0..255" in attributes


def test_a_bad_photo_mapping_attribute_is_a_400(server, photos):
    status, _, payload = post(server.port, photos[0][0], "image/jpeg",
                              {"X-Amzn-SageMaker-Custom-Attributes": "photo_mapping=maybe"})
    assert status == 400 and "photo_mapping='maybe'" in json.loads(payload)["message"]


def test_the_page_sees_what_the_model_sees(server, photos):
    body = photos[0][0]
    status, _, payload = request(server.port, "POST", "/explain", body, {"Content-Type": "image/jpeg"})
    assert status == 200, payload[:300]
    document = json.loads(payload)
    seen = np.asarray(document["input"])
    assert seen.shape == (28, 28) and "negate" in document["preprocessing"]["photo_mapping"]
    border = np.concatenate([seen[0], seen[-1], seen[:, 0], seen[:, -1]])
    assert np.median(border) < 0.05 and seen.max() > 0.8  # a dark background, a bright garment
    status, _, payload = request(server.port, "POST", "/explain", body,
                                 {"Content-Type": "image/jpeg", **OFF})
    assert json.loads(payload)["preprocessing"]["photo_mapping"] == "off"
    assert np.median(np.asarray(json.loads(payload)["input"])[0]) > 0.5  # the light table, unmapped


@pytest.mark.parametrize("name, make", [
    ("blank black", lambda: Image.new("L", (300, 200), 0)),
    ("all white", lambda: Image.new("RGB", (640, 480), (255, 255, 255))),
    ("1x1", lambda: Image.new("RGB", (1, 1), (200, 10, 10))),
    ("1x500 strip", lambda: Image.new("L", (1, 500), 128)),
    ("huge", lambda: Image.new("RGB", (4000, 3000), (230, 230, 230))),
])
def test_degenerate_images_get_a_prediction_or_a_clear_4xx(server, name, make):
    buffer = io.BytesIO()
    make().save(buffer, "JPEG" if name == "huge" else "PNG")
    content_type = "image/jpeg" if name == "huge" else "image/png"
    status, _, payload = post(server.port, buffer.getvalue(), content_type)
    assert status == 200, payload[:300]
    document = json.loads(payload)
    assert len(document["predictions"]) == 1 and "photo_mapping" in document["input"]


def test_too_many_pixels_is_a_413(server):
    buffer = io.BytesIO()
    Image.new("L", (5000, 5000), 255).save(buffer, "PNG")
    status, _, payload = post(server.port, buffer.getvalue(), "image/png")
    assert status == 413 and "5000x5000" in json.loads(payload)["message"]


# --- the handler's edges -------------------------------------------------------------------------

def test_deeply_nested_json_is_a_400(server):
    body = ("[" * 1100 + "]" * 1100).encode()  # 2.2 KB
    status, _, payload = post(server.port, body, "application/json")
    assert status == 400 and "nested too deeply" in json.loads(payload)["message"]
    nested_instances = b'{"instances": ' + body + b"}"
    status, _, payload = post(server.port, nested_instances, "application/json")
    assert status == 400 and "nested too deeply" in json.loads(payload)["message"]
    status, _, payload = post(server.port, b"\n" + body, "application/jsonlines")
    assert status == 400 and "line 2" in json.loads(payload)["message"]


@pytest.mark.parametrize("content_type", ["application/x-npy", "text/csv"])
def test_the_batch_cap_holds_for_batches_at_the_models_size(server, content_type):
    images = MAX_BATCH_VALUES // 784 + 1
    if content_type == "application/x-npy":
        buffer = io.BytesIO()
        np.save(buffer, np.zeros((images, 28, 28), np.uint8))
        body = buffer.getvalue()
    elif content_type == "text/csv":
        body = ("0," * 783 + "0\n").encode() * images
    status, _, payload = post(server.port, body, content_type)
    message = json.loads(payload)["message"]
    assert status == 413 and f"at most {MAX_BATCH_VALUES}" in message and f"{images} images" in message


def test_unit_scaled_json_pixels_are_not_divided_again(server, fashion_test_images):
    images, labels = fashion_test_images
    raw = images[:20, ..., 0].astype(np.float32)
    answers = {}
    for name, document in (("raw", {"instances": raw.tolist()}),
                           ("unit", {"instances": (raw / 255).tolist()}),
                           ("explicit", {"instances": (raw / 255).tolist(), "scale": "0..1"})):
        status, _, payload = post(server.port, json.dumps(document).encode(), "application/json")
        assert status == 200, payload[:300]
        answers[name] = json.loads(payload)
    classes = {name: [row["class_index"] for row in doc["predictions"]] for name, doc in answers.items()}
    assert classes["unit"] == classes["raw"] == classes["explicit"]
    assert answers["raw"]["input"]["scaling"] == "0..255" and answers["unit"]["input"]["scaling"] == "0..1"
    status, _, payload = post(server.port, json.dumps({"instances": raw.tolist(), "scale": "0..1"}).encode(),
                              "application/json")
    assert status == 400 and "expected pixels in 0..1" in json.loads(payload)["message"]
    status, _, payload = post(server.port, json.dumps({"instances": raw.tolist(), "scale": "percent"}).encode(),
                              "application/json")
    assert status == 400 and "\"scale\" is 'percent'" in json.loads(payload)["message"]


def test_a_photo_in_json_is_mapped_too(server, photos):
    bodies, labels = photos
    document = {"instances": [{"image": base64.b64encode(body).decode()} for body in bodies[:10]]}
    status, _, payload = post(server.port, json.dumps(document).encode(), "application/json")
    assert status == 200
    answer = json.loads(payload)
    assert "negate" in answer["input"]["photo_mapping"]
    single, _ = predicted(server.port, bodies[:10], "image/jpeg")
    assert [row["class_index"] for row in answer["predictions"]] == single.tolist()


def test_the_page_shows_the_photo_beside_what_the_model_sees(server, browser, photos, tmp_path):
    from selenium.webdriver.common.by import By

    upload = tmp_path / "photo.jpg"
    upload.write_bytes(photos[0][0])
    browser.get(f"http://127.0.0.1:{server.port}/")
    browser.find_element(By.ID, "file").send_keys(str(upload))
    _wait_state(browser, "shown")
    width = browser.execute_script("const p = document.getElementById('photo'); return p.complete && p.naturalWidth;")
    assert width == Image.open(io.BytesIO(photos[0][0])).size[0]
    caption = browser.find_element(By.ID, "input-caption").text
    assert caption.startswith("what the model sees (28x28") and "negate" in caption and "crop" in caption
    assert browser.execute_script(CANVAS_VARIANCE, "#input")[0] > 0


# --- batch transform and the deploy chain's local fallback ------------------------------------------

@pytest.fixture(scope="module")
def photo_dir(photos, trained_model_dir, tmp_path_factory):
    """The photo-like JPEGs as a folder tree, one folder per true class (deploy.score's layout)."""
    from deploy.score import class_folder

    classes = json.loads((trained_model_dir / "labels.json").read_text())
    root = tmp_path_factory.mktemp("photo-inputs")
    for index, (body, label) in enumerate(zip(*photos)):
        folder = root / class_folder(classes[int(label)])
        folder.mkdir(exist_ok=True)
        (folder / f"photo-{index:03d}.jpg").write_bytes(body)
    return root


def scored(pairs, trained_model_dir) -> tuple[float, set]:
    from deploy.score import score_outputs

    pairs = list(pairs)
    classes = json.loads((trained_model_dir / "labels.json").read_text())
    steps = {json.loads(body)["input"]["photo_mapping"] for _, body in pairs}
    return score_outputs(pairs, classes).accuracy, steps


def folder_outputs(out) -> list[tuple[str, bytes]]:
    return [(p.relative_to(out).as_posix()[:-len(".out")], p.read_bytes()) for p in sorted(out.rglob("*.out"))]


@pytest.mark.parametrize("where", ["server", "in-process"])
def test_batch_transform_maps_photos(server, photo_dir, trained_model_dir, photos, tmp_path, capsys, where):
    from deploy import cli

    plain_accuracy = np.mean(predicted(server.port, photos[0], "image/jpeg")[0] == photos[1])
    source = ["--endpoint-url", f"http://127.0.0.1:{server.port}"] if where == "server" else \
        ["--model-dir", str(trained_model_dir)]
    out = tmp_path / "out"
    code = cli.main(["transform", "--local", "--no-progress", "--input", str(photo_dir), "--output", str(out), *source])
    capsys.readouterr()
    assert code == 0
    accuracy, steps = scored(folder_outputs(out), trained_model_dir)
    assert accuracy == pytest.approx(plain_accuracy, abs=1e-9) and all("negate" in s for s in steps), steps


def test_the_local_fallback_maps_photos(aws, deny_operations, server, photo_dir, trained_model_dir, photos, tmp_path):
    import boto3

    from deploy.fallback import deploy
    from deploy.package import build_archive
    from tests.fixtures_deploy import PREDICTIONS, options

    deny_operations("CreateEndpointConfig", "CreateTransformJob")
    archive = build_archive(trained_model_dir, tmp_path / "model.tar.gz")
    result = deploy(options(archive, photo_dir, tmp_path))
    assert result["served_by"] == "local"
    s3 = boto3.client("s3")
    listed = s3.list_objects_v2(Bucket="lab-bucket", Prefix=PREDICTIONS)["Contents"]
    pairs = [(o["Key"][len(PREDICTIONS):-len(".out")],
              s3.get_object(Bucket="lab-bucket", Key=o["Key"])["Body"].read()) for o in listed
             if o["Key"].endswith(".out")]  # beside them: the transform's manifest
    assert len(pairs) == COUNT
    accuracy, steps = scored(pairs, trained_model_dir)
    served_accuracy = np.mean(predicted(server.port, photos[0], "image/jpeg")[0] == photos[1])
    assert all("negate" in s for s in steps) and accuracy == pytest.approx(served_accuracy, abs=1e-9), (accuracy, steps)


def test_unit_scaled_npy_pixels_by_detection_or_custom_attribute(server, fashion_test_images):
    images = fashion_test_images[0][:8, ..., 0]
    answers = {}
    for name, array, attributes in (("raw", images.astype(np.float32), None),
                                    ("unit", images.astype(np.float32) / 255, None),
                                    ("binary unit", (images > 127).astype(np.float32), "scale=0..1")):
        buffer = io.BytesIO()
        np.save(buffer, array)
        headers = {"X-Amzn-SageMaker-Custom-Attributes": attributes} if attributes else {}
        status, answer_headers, payload = post(server.port, buffer.getvalue(), "application/x-npy", headers)
        assert status == 200, payload[:300]
        answers[name] = (json.loads(payload), answer_headers.get("x-amzn-sagemaker-custom-attributes"))
    assert [r["class_index"] for r in answers["raw"][0]["predictions"]] == \
        [r["class_index"] for r in answers["unit"][0]["predictions"]]
    assert answers["raw"][1] is None and answers["unit"][1] == "photo_mapping=unchanged,scaling=0..1"
    assert answers["binary unit"][0]["input"]["scaling"] == "0..1"
    status, _, payload = post(server.port, buffer.getvalue(), "application/x-npy",
                              {"X-Amzn-SageMaker-Custom-Attributes": "scale=1"})
    assert status == 400 and "custom attribute scale='1'" in json.loads(payload)["message"]
