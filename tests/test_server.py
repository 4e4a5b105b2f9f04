"""The model server as a real process on a free port, reached over real sockets: formats, the
error contract, concurrency with micro-batching, user overrides, start-up and SIGTERM."""
from __future__ import annotations

import base64
import io
import json
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from inference.local import LocalServer, invoke, request
from tests.fixtures_data import png_bytes

N = 24


def npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def jpeg(image) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0]).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def ok_json(port, body, content_type, accept=None) -> dict:
    status, media, payload = invoke(port, body, content_type, accept)
    assert status == 200, payload[:500]
    assert media.startswith("application/json")
    return json.loads(payload)


def probabilities_of(document: dict) -> np.ndarray:
    return np.asarray([list(row["probabilities"].values()) for row in document["predictions"]], np.float32)


@pytest.fixture(scope="module")
def server(trained_model_dir, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    with LocalServer(trained_model_dir, args=["--max-payload-mb", "1"], log_path=log_path) as running:
        yield running
        code = running.stop()
    assert code == 0, running.log_text()[-2000:]


@pytest.fixture(scope="module")
def reference(trained_model_dir, fashion_test_images):
    """The trained Keras model's own probabilities for the test images."""
    import keras

    images = fashion_test_images[0]
    model = keras.models.load_model(trained_model_dir / "model.keras")
    return np.asarray(model(images.astype("float32") / 255.0, training=False))


def test_ping_and_execution_parameters(server):
    status, _, body = request(server.port, "GET", "/ping")
    assert status == 200 and json.loads(body)["model"]["backend"] == "onnx"
    status, _, body = request(server.port, "GET", "/execution-parameters")
    assert status == 200
    assert json.loads(body) == {"MaxConcurrentTransforms": 1, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 1}


def test_formats_agree_with_each_other_and_with_the_model(server, fashion_test_images, reference):
    images = fashion_test_images[0][:N]
    expected = reference[:N]
    flat = images.reshape(N, -1)
    answers = {
        "png": probabilities_of({"predictions": [ok_json(server.port, png_bytes(one), "image/png")["predictions"][0]
                                                 for one in images]}),
        "x-image": probabilities_of(ok_json(server.port, png_bytes(images[0]), "application/x-image")),
        "json": probabilities_of(ok_json(server.port, json.dumps({"instances": images[..., 0].tolist()}).encode(),
                                         "application/json")),
        "json-b64": probabilities_of(ok_json(server.port, json.dumps(
            {"instances": [{"image": base64.b64encode(png_bytes(one)).decode()} for one in images]}).encode(),
            "application/json")),
        "csv": probabilities_of(ok_json(server.port, "\n".join(",".join(map(str, r)) for r in flat).encode(),
                                        "text/csv")),
    }
    status, media, payload = invoke(server.port, npy(images), "application/x-npy", "application/x-npy")
    assert status == 200 and media == "application/x-npy"
    answers["npy"] = np.load(io.BytesIO(payload))
    for name, probabilities in answers.items():
        assert np.abs(probabilities - expected[:len(probabilities)]).max() < 1e-5, name
    jpeg_answers = [ok_json(server.port, jpeg(one), "image/jpeg")["predictions"][0]["class_index"] for one in images]
    assert np.mean(np.asarray(jpeg_answers) == expected.argmax(1)) >= 0.9  # lossy, mostly the same answer
    status, media, payload = invoke(server.port, npy(images[:3]), "application/x-npy", "text/csv")
    assert status == 200 and media.startswith("text/csv")
    assert [int(line.split(",")[1]) for line in payload.decode().split()] == expected[:3].argmax(1).tolist()


def test_error_contract(server, fashion_test_images):
    pid = server.process.pid
    good = png_bytes(fashion_test_images[0][0])
    cases = [
        (good, "text/plain", None, 415, "supported: image/png"),
        (good, None, None, 415, "no Content-Type"),
        (np.zeros(2 * 1024 * 1024, np.uint8).tobytes(), "application/x-npy", None, 413, "1 MB payload limit"),
        (good[: len(good) // 2], "image/png", None, 400, "corrupt or truncated"),
        (b"\x00" * 64, "image/jpeg", None, 400, "not a readable image"),
        (b'{"instances": "x"}', "application/json", None, 400, "non-empty list"),
        (b"1,2\n", "text/csv", None, 400, "expected 784"),
        (npy(np.zeros((1, 28, 28, 7))), "application/x-npy", None, 400, "7 channels"),
        (npy(np.array(["a"])), "application/x-npy", None, 400, "dtype"),
        (npy(np.zeros((1, 0, 0, 1), np.uint8)), "application/x-npy", None, 400, "holds no pixels"),
        (npy(np.zeros((50_000, 1, 1, 1), np.uint8)), "application/x-npy", None, 413, "images per request"),
        (good, "image/png", "image/webp", 406, "application/json"),
    ]
    for body, content_type, accept, status, fragment in cases:
        got, media, payload = invoke(server.port, body, content_type, accept)
        assert (got, media) == (status, "application/json"), (fragment, payload[:300])
        document = json.loads(payload)
        assert document["status"] == status and fragment in document["message"], document
    # Chunked, so no Content-Length announces the size: the limit holds while reading.
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    chunks = (bytes(256 * 1024) for _ in range(8))
    connection.request("POST", "/invocations", body=chunks, encode_chunked=True,
                       headers={"Content-Type": "application/x-npy", "Transfer-Encoding": "chunked"})
    response = connection.getresponse()
    assert response.status == 413 and json.loads(response.read())["status"] == 413
    connection.close()
    assert request(server.port, "GET", "/invocations")[0] == 405
    assert request(server.port, "GET", "/nowhere")[0] == 404
    # Under the limit is fine: 600 images in one npy body of ~470 kB.
    many = ok_json(server.port, npy(np.resize(fashion_test_images[0], (600, 28, 28, 1))), "application/x-npy")
    assert len(many["predictions"]) == 600
    assert server.process.pid == pid and server.process.poll() is None
    assert request(server.port, "GET", "/ping")[0] == 200


def test_concurrent_clients_are_answered_correctly_and_batched(server, fashion_test_images, reference):
    images = fashion_test_images[0]
    bodies = [png_bytes(one) for one in images[:100]]
    expected = reference[:100].argmax(1)
    before = json.loads(request(server.port, "GET", "/ping")[2])

    def client(worker: int) -> list[tuple[int, int, int]]:
        import http.client

        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        answers = []
        for i in range(50):
            index = (worker * 50 + i) % len(bodies)
            connection.request("POST", "/invocations", bodies[index], {"Content-Type": "image/png"})
            response = connection.getresponse()
            payload = response.read()
            label = json.loads(payload)["predictions"][0]["class_index"] if response.status == 200 else -1
            answers.append((index, response.status, label))
        connection.close()
        return answers

    with ThreadPoolExecutor(16) as pool:
        results = [answer for answers in pool.map(client, range(16)) for answer in answers]
    assert len(results) == 800
    assert all(status == 200 for _, status, _ in results)
    assert all(label == expected[index] for index, _, label in results)
    after = json.loads(request(server.port, "GET", "/ping")[2])
    calls = after["batched_model_calls"] - before["batched_model_calls"]
    assert after["batched_images"] - before["batched_images"] == 800
    assert calls < 800, "concurrent requests were never batched together"


def test_savedmodel_backend_serves_the_same_answers(trained_model_dir, fashion_test_images, reference, tmp_path):
    images = fashion_test_images[0][:8]
    with LocalServer(trained_model_dir, args=["--backend", "savedmodel"], log_path=tmp_path / "tf.log") as tf_server:
        status, _, body = request(tf_server.port, "GET", "/ping")
        assert json.loads(body)["model"]["backend"] == "savedmodel"
        answer = probabilities_of(ok_json(tf_server.port, npy(images), "application/x-npy"))
    assert np.abs(answer - reference[:8]).max() < 1e-5


OVERRIDE = '''
import json
import os
import time
from pathlib import Path

from inference import handler as convlab

HERE = Path(__file__).parent


def model_fn(model_dir):
    while not (HERE / "gate").exists():  # the test decides when loading finishes
        time.sleep(0.02)
    return convlab.model_fn(model_dir)


def predict_fn(data, model):
    (HERE / "predicting").touch()
    time.sleep(float(os.environ.get("SLOW_PREDICT", "0")))
    return convlab.predict_fn(data, model)


def output_fn(prediction, accept):
    body, content_type = convlab.output_fn(prediction, "application/json")
    document = json.loads(body)
    document["served_by"] = "user override"
    return json.dumps(document).encode(), content_type
'''


@pytest.fixture
def override_dir(trained_model_dir, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(trained_model_dir, model_dir)
    (model_dir / "code").mkdir(exist_ok=True)
    (model_dir / "code" / "inference.py").write_text(OVERRIDE)
    return model_dir


def test_user_override_and_ping_before_the_model_loads(override_dir, fashion_test_images, reference, tmp_path):
    server = LocalServer(override_dir, log_path=tmp_path / "override.log").start()
    try:
        deadline = time.perf_counter() + 30
        while (status := server.ping()) is None and time.perf_counter() < deadline:
            assert server.process.poll() is None, server.log_text()
            time.sleep(0.02)
        assert status == 503  # listening, model not loaded
        early = invoke(server.port, png_bytes(fashion_test_images[0][0]), "image/png")
        assert early[0] == 503 and "loading" in json.loads(early[2])["message"]
        (override_dir / "code" / "gate").touch()
        server.wait_ready(30)
        document = ok_json(server.port, png_bytes(fashion_test_images[0][1]), "image/png", "text/csv")
        assert document["served_by"] == "user override"  # output_fn replaced; it answers JSON for any Accept
        assert document["predictions"][0]["class_index"] == int(reference[1].argmax())
        assert (override_dir / "code" / "predicting").exists()  # predict_fn replaced
    finally:
        assert server.stop() == 0
    assert "provides model_fn, predict_fn, output_fn" in server.log_text()


def test_sigterm_drains_requests_in_flight(override_dir, fashion_test_images, reference, tmp_path):
    (override_dir / "code" / "gate").touch()
    server = LocalServer(override_dir, env={"SLOW_PREDICT": "0.4"}, log_path=tmp_path / "drain.log")
    with server:
        bodies = [png_bytes(one) for one in fashion_test_images[0][:3]]
        results = [None] * 3

        def send(i: int) -> None:
            results[i] = invoke(server.port, bodies[i], "image/png")

        threads = [threading.Thread(target=send, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        deadline = time.perf_counter() + 20
        while not (override_dir / "code" / "predicting").exists() and time.perf_counter() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)  # all three are in the server now, one predicting and two queued
        code = server.stop()
        for thread in threads:
            thread.join(30)
    assert code == 0
    for i, (status, _, payload) in enumerate(results):
        assert status == 200, payload
        assert json.loads(payload)["predictions"][0]["class_index"] == int(reference[i].argmax())
    assert server.ping() is None  # gone: nothing listens any more


def test_a_broken_user_module_stops_the_server_at_start(trained_model_dir, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(trained_model_dir, model_dir)
    (model_dir / "code").mkdir(exist_ok=True)
    (model_dir / "code" / "inference.py").write_text("import numpy\nimport a_module_that_is_not_installed\n")
    server = LocalServer(model_dir, log_path=tmp_path / "broken.log").start()
    assert server.process.wait(60) != 0
    log = server.log_text()
    assert "Traceback" in log and "a_module_that_is_not_installed" in log and "code/inference.py" in log


def test_a_model_dir_without_labels_stops_the_server(trained_model_dir, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(trained_model_dir, model_dir)
    (model_dir / "labels.json").unlink()
    server = LocalServer(model_dir, log_path=tmp_path / "nolabels.log").start()
    assert server.process.wait(60) == 1
    assert "labels.json: not found" in server.log_text()


def test_sagemaker_worker_count_and_timeout(override_dir, fashion_test_images, tmp_path):
    """SAGEMAKER_MODEL_SERVER_WORKERS starts that many worker processes; a prediction slower than
    SAGEMAKER_MODEL_SERVER_TIMEOUT is answered 504 with a JSON body, and the server stays up."""
    (override_dir / "code" / "gate").touch()
    env = {"SAGEMAKER_MODEL_SERVER_WORKERS": "2", "SAGEMAKER_MODEL_SERVER_TIMEOUT": "1", "SLOW_PREDICT": "2"}
    with LocalServer(override_dir, env=env, log_path=tmp_path / "workers.log") as server:
        parameters = json.loads(request(server.port, "GET", "/execution-parameters")[2])
        assert parameters["MaxConcurrentTransforms"] == 2
        status, media, payload = invoke(server.port, png_bytes(fashion_test_images[0][0]), "image/png")
        assert (status, media) == (504, "application/json")
        assert "SAGEMAKER_MODEL_SERVER_TIMEOUT" in json.loads(payload)["message"]
        assert server.ping() == 200
    log = server.log_text()
    assert "2 workers" in log and log.count("Started server process") == 2


def test_a_model_dir_with_the_bundled_handler_serves_the_same(trained_model_dir, fashion_test_images, reference,
                                                             tmp_path):
    """What the deploy packager ships: code/inference.py is convlab's handler copied by
    write_code_dir. The server runs that copy, keeps micro-batching, and maps its typed errors."""
    from inference.code_bundle import write_code_dir

    model_dir = tmp_path / "model"
    shutil.copytree(trained_model_dir, model_dir)
    write_code_dir(model_dir)
    bodies = [png_bytes(one) for one in fashion_test_images[0][:32]]
    with LocalServer(model_dir, log_path=tmp_path / "bundle.log") as server:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda body: invoke(server.port, body, "image/png"), bodies * 4))
        assert all(status == 200 for status, _, _ in answers)
        labels = [json.loads(payload)["predictions"][0]["class_index"] for _, _, payload in answers]
        assert labels == reference[:32].argmax(1).tolist() * 4
        stats = json.loads(request(server.port, "GET", "/ping")[2])
        assert stats["batched_images"] == 128  # every request went through the micro-batcher
        for body, content_type, status in ((bodies[0], "text/plain", 415), (b"nope", "image/png", 400),
                                           (b"[]", "application/json", 400)):
            got, media, payload = invoke(server.port, body, content_type)
            assert (got, media) == (status, "application/json") and json.loads(payload)["status"] == status
    assert "convlab handler copy" in server.log_text()
