"""The handler in process: model_fn / input_fn / predict_fn / output_fn on a CNN trained by the
test run and real Fashion-MNIST test images, the TF Serving handlers, and the code/ bundle."""
from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from inference import handler
from inference.code_bundle import write_code_dir
from inference.errors import InferenceError
from tests.fixtures_data import png_bytes

N = 40


def encode(image: np.ndarray, fmt: str, **options) -> bytes:
    array = image[..., 0] if image.shape[-1] == 1 else image
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def model(trained_model_dir):
    return handler.model_fn(str(trained_model_dir))


@pytest.fixture(scope="module")
def images(fashion_test_images):
    return fashion_test_images[0][:N], fashion_test_images[1][:N]


@pytest.fixture(scope="module")
def keras_probabilities(trained_model_dir, fashion_test_images):
    """The trained Keras model's own output on the test images."""
    import keras

    keras_model = keras.models.load_model(trained_model_dir / "model.keras")
    return np.asarray(keras_model(fashion_test_images[0].astype("float32") / 255.0, training=False))


def test_model_fn_prefers_onnx_and_matches_the_keras_model(model, fashion_test_images, keras_probabilities):
    assert model.info["backend"] == "onnx"
    images, labels = fashion_test_images
    batch = handler.input_fn(npy(images), "application/x-npy")
    prediction = handler.predict_fn(batch, model)
    assert prediction["classes"] == json.loads((model.model_dir / "labels.json").read_text())
    assert np.abs(prediction["probabilities"] - keras_probabilities).max() < 1e-5
    np.testing.assert_allclose(prediction["probabilities"].sum(axis=1), 1.0, atol=1e-5)
    assert (prediction["probabilities"].argmax(1) == labels).mean() > 0.6  # trained, not chance (0.1)


def test_savedmodel_backend_agrees_with_onnx(trained_model_dir, model, images, monkeypatch):
    monkeypatch.setenv("CONVLAB_BACKEND", "savedmodel")
    saved = handler.model_fn(str(trained_model_dir))
    assert saved.info["backend"] == "savedmodel"
    batch = images[0].astype(np.float32) / 255.0
    assert np.abs(saved.predict(batch) - model.predict(batch)).max() < 1e-5


def test_every_content_type_decodes_to_the_training_input(model, images):
    pixels = images[0]
    expected = pixels.astype(np.float32) * np.float32(1 / 255)
    flat = pixels.reshape(N, -1)
    bodies = {
        "application/x-npy": npy(pixels),
        "application/x-npy (uint8 [N, H, W])": npy(pixels[..., 0]),
        "application/json": json.dumps({"instances": pixels[..., 0].tolist()}).encode(),
        "application/json (flat)": json.dumps({"instances": flat.tolist()}).encode(),
        "application/json (base64 list)": json.dumps(
            [{"image": base64.b64encode(png_bytes(one)).decode()} for one in pixels]).encode(),
        "text/csv": "\n".join(",".join(map(str, row)) for row in flat).encode(),
    }
    for name, body in bodies.items():
        decoded = handler.input_fn(body, name.split(" ")[0])
        assert decoded.dtype == np.float32 and decoded.shape == (N, 28, 28, 1), name
        np.testing.assert_array_equal(decoded, expected, err_msg=name)
    for content_type in ("image/png", "application/x-image"):
        one = handler.input_fn(png_bytes(pixels[3]), content_type)
        np.testing.assert_array_equal(one, expected[3:4])
    single = handler.input_fn(json.dumps({"image": base64.b64encode(png_bytes(pixels[5])).decode()}),
                              "application/json; charset=utf-8")
    np.testing.assert_array_equal(single, expected[5:6])
    jpeg = handler.input_fn(encode(pixels[7], "JPEG", quality=95), "image/jpeg")
    assert np.abs(jpeg - expected[7:8]).mean() < 0.02  # lossy, but the same picture


def test_colour_and_larger_images_are_converted_as_pillow_would(model, images):
    gray = images[0][9, :, :, 0]
    colour = Image.fromarray(np.stack([gray, gray // 2, 255 - gray], axis=-1)).resize((84, 84), Image.NEAREST)
    expected = np.asarray(colour.convert("L").resize((28, 28), Image.BILINEAR), np.float32)[None, :, :, None] / 255
    from inference.context import RequestContext

    for content_type, body in (("image/png", encode(np.asarray(colour), "PNG")),
                               ("application/x-npy", npy(np.asarray(colour)))):
        # The plain conversion; with the photo mapping on (the default) the image is also cropped and toned.
        decoded = handler.input_fn(body, content_type, context=RequestContext(custom_attributes="photo_mapping=off"))
        np.testing.assert_allclose(decoded, expected, atol=1e-7, err_msg=content_type)
    # A grayscale image at twice the size classifies like the original.
    larger = Image.fromarray(gray).resize((56, 56), Image.BILINEAR)
    original = handler.predict_fn(handler.input_fn(png_bytes(images[0][9]), "image/png"), model)
    resized = handler.predict_fn(handler.input_fn(encode(np.asarray(larger)[..., None], "PNG"), "image/png"), model)
    assert original["probabilities"].argmax() == resized["probabilities"].argmax()


def test_a_16_bit_png_is_scaled_as_training_reads_it(model, images):
    pixels = images[0][0, ..., 0]
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint16) * 257).save(buffer, format="PNG")
    decoded = handler.input_fn(buffer.getvalue(), "image/png")
    np.testing.assert_allclose(decoded[0, ..., 0], pixels.astype(np.float32) / 255, atol=1e-7)


def test_output_formats(model, images):
    prediction = handler.predict_fn(handler.input_fn(npy(images[0][:5]), "application/x-npy"), model)
    probabilities, classes = prediction["probabilities"], prediction["classes"]
    body, content_type = handler.output_fn(prediction, None)
    assert content_type == "application/json"
    rows = json.loads(body)["predictions"]
    assert [row["class_index"] for row in rows] == probabilities.argmax(1).tolist()
    assert [row["label"] for row in rows] == [classes[i] for i in probabilities.argmax(1)]
    assert list(rows[0]["probabilities"]) == classes
    np.testing.assert_allclose([list(row["probabilities"].values()) for row in rows], probabilities, rtol=1e-6)

    body, content_type = handler.output_fn(prediction, "application/x-npy")
    assert content_type == "application/x-npy"
    np.testing.assert_array_equal(np.load(io.BytesIO(body)), probabilities)

    body, content_type = handler.output_fn(prediction, "text/html;q=0.9, text/csv;q=0.5")
    assert content_type == "text/csv"
    lines = body.decode().strip().splitlines()
    assert len(lines) == 5
    label, index, *values = lines[0].split(",")
    assert (label, int(index)) == (rows[0]["label"], rows[0]["class_index"])
    np.testing.assert_allclose(np.asarray(values, np.float32), probabilities[0], rtol=1e-6)
    assert handler.output_fn(prediction, "*/*")[1] == "application/json"


BAD_REQUESTS = [
    (b"GIF89a....", "image/gif", 415, "supported: image/png"),
    (b"\x89PNG", None, 415, "no Content-Type"),
    (b"not a png at all", "image/png", 400, "not a readable image"),
    (b"", "image/png", 400, "empty"),
    (b'{"instances": [[1, 2], [3]]}', "application/json", 400, "instances[0]"),
    (b'{"pixels": []}', "application/json", 400, "expected \"instances\""),
    (b'{"image": "%%%"}', "application/json", 400, "base64"),
    (b"{not json", "application/json", 400, "not valid JSON"),
    (b"1,2,3\n", "text/csv", 400, "expected 784"),
    (b"1,x,3\n", "text/csv", 400, "row 1"),
    (npy(np.array([{"a": 1}], dtype=object)), "application/x-npy", 400, "pickled"),
    (npy(np.full((28, 28), 300.0)), "application/x-npy", 400, "0..255"),
    (npy(np.full((28, 28), np.nan)), "application/x-npy", 400, "NaN"),
    (npy(np.zeros((2, 3, 28, 28, 1))), "application/x-npy", 400, "shape [2, 3, 28, 28, 1]"),
    (b"garbage", "application/x-npy", 400, ".npy"),
    (npy(np.zeros((1, 0, 0, 1), np.uint8)), "application/x-npy", 400, "holds no pixels"),
    (npy(np.zeros((28, 0), np.uint8)), "application/x-npy", 400, "holds no pixels"),
    (b'{"instances": [[[]]]}', "application/json", 400, "holds no pixels"),
    # 50 kB of 1x1 images would be 157 MB of model input: refused before any resizing.
    (npy(np.zeros((50_000, 1, 1, 1), np.uint8)), "application/x-npy", 413, "images per request"),
    (json.dumps({"instances": [[[0]]] * 50_000}).encode(), "application/json", 413, "images per request"),
]


@pytest.mark.parametrize("body, content_type, status, fragment", BAD_REQUESTS)
def test_bad_input_raises_a_typed_error_with_its_status(model, body, content_type, status, fragment):
    with pytest.raises(InferenceError) as caught:
        handler.input_fn(body, content_type)
    assert caught.value.status == status
    assert fragment in caught.value.message


def test_a_large_batch_reaches_the_backend_in_bounded_slices(trained_model_dir, images):
    from inference.backends import PREDICT_CHUNK

    model = handler.model_fn(str(trained_model_dir))
    real = model.backend
    sizes = []

    class Recording:
        name = real.name

        def predict(self, batch):
            sizes.append(len(batch))
            return real.predict(batch)

    model.backend = Recording()
    batch = np.resize(images[0], (PREDICT_CHUNK * 2 + 7, 28, 28, 1)).astype(np.float32) / 255
    probabilities = model.predict(batch)
    assert max(sizes) <= PREDICT_CHUNK and sum(sizes) == len(batch)
    np.testing.assert_allclose(probabilities[:len(images[0])], real.predict(batch[:len(images[0])]), atol=1e-6)


def test_unsupported_accept_is_406(model, images):
    prediction = handler.predict_fn(images[0][:1].astype(np.float32) / 255, model)
    with pytest.raises(InferenceError) as caught:
        handler.output_fn(prediction, "image/png")
    assert caught.value.status == 406 and "application/json" in caught.value.message


def test_tf_serving_container_handlers(trained_model_dir, model, images):
    """input_handler's request, answered by the SavedModel as TF Serving's REST API answers it
    ({"predictions": ...} for the row format), then output_handler: the same answer as predict_fn +
    output_fn. tests/test_toolkits.py runs the same through a TF Serving REST stand-in over HTTP."""
    import collections

    import requests
    import tensorflow as tf

    Context = collections.namedtuple("Context", "request_content_type accept_header")
    request = json.loads(handler.input_handler(io.BytesIO(npy(images[0][:4])), Context("application/x-npy", None)))
    assert request["signature_name"] == "serving_default"
    signature = tf.saved_model.load(str(trained_model_dir / "1")).signatures["serving_default"]
    outputs = signature(images=tf.constant(request["instances"], tf.float32))["probabilities"].numpy()
    response = requests.Response()
    response.status_code, response._content = 200, json.dumps({"predictions": outputs.tolist()}).encode()
    body, content_type = handler.output_handler(response, Context("application/x-npy", "application/json"))
    expected = handler.predict_fn(images[0][:4].astype(np.float32) / 255, model)
    rows = json.loads(body)["predictions"]
    assert content_type == "application/json"
    assert [row["class_index"] for row in rows] == expected["probabilities"].argmax(1).tolist()
    failed = requests.Response()
    failed.status_code, failed._content = 400, b'{"error": "bad input"}'
    with pytest.raises(ValueError, match="400"):
        handler.output_handler(failed, Context("application/x-npy", None))


def test_code_bundle_serves_from_code_dir_alone(trained_model_dir, tmp_path, images):
    """code/inference.py loaded the way the serving containers load it (module name `inference`,
    from its file), in a fresh interpreter where the repository is not importable."""
    model_dir = tmp_path / "model"
    shutil.copytree(trained_model_dir, model_dir)
    written = write_code_dir(model_dir)
    names = sorted(str(path.relative_to(model_dir)) for path in written)
    assert "code/inference.py" in names and "code/requirements.txt" in names
    (tmp_path / "cat.png").write_bytes(png_bytes(images[0][0]))
    script = f"""
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("inference", {str(model_dir / 'code' / 'inference.py')!r})
module = importlib.util.module_from_spec(spec)
sys.modules["inference"] = module
spec.loader.exec_module(module)
model = module.model_fn({str(model_dir)!r})
data = module.input_fn(open({str(tmp_path / 'cat.png')!r}, "rb").read(), "image/png")
body, content_type = module.output_fn(module.predict_fn(data, model), "application/json")
files = sorted({{m.__file__ for m in list(sys.modules.values()) if getattr(m, "__file__", None)}})
print(json.dumps({{"body": json.loads(body), "type": content_type, "files": files}}))
"""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CONVLAB_MODEL_DIR")}
    result = subprocess.run([sys.executable, "-I", "-c", script], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    repo = str(handler.__file__).rsplit("/inference/", 1)[0]
    assert not [f for f in answer["files"] if f.startswith(repo + "/inference/")], "the bundle imported inference/"
    assert any(f.startswith(str(model_dir / "code" / "convlab_inference")) for f in answer["files"])
    model = handler.model_fn(str(trained_model_dir))
    expected = handler.predict_fn(handler.input_fn(png_bytes(images[0][0]), "image/png"), model)
    assert answer["body"]["predictions"][0]["class_index"] == int(expected["probabilities"].argmax())
    requirements = (model_dir / "code" / "requirements.txt").read_text().split()
    assert any(r.startswith("numpy") for r in requirements) and any(r.startswith("pillow") for r in requirements)
