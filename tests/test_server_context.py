"""The server as SageMaker runs it in a transform container, over real sockets: the SAGEMAKER_*
batch variables behind /execution-parameters, JSON Lines in and out, custom attributes to and from
the handler, and a stuck prediction that must not hold up the requests after it."""
from __future__ import annotations

import base64
import json
import shutil
import threading
import time

import numpy as np
import pytest

from inference.local import LocalServer, invoke, request
from tests.fixtures_data import png_bytes


def b64(image) -> str:
    return base64.b64encode(png_bytes(image)).decode()


def test_batch_variables_set_the_execution_parameters_and_the_payload_limit(trained_model_dir, fashion_test_images,
                                                                            tmp_path):
    env = {"SAGEMAKER_BATCH": "true", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "2", "SAGEMAKER_BATCH_STRATEGY": "SINGLE_RECORD",
           "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "3"}
    with LocalServer(trained_model_dir, env=env, log_path=tmp_path / "batch.log") as server:
        status, _, body = request(server.port, "GET", "/execution-parameters")
        assert status == 200
        assert json.loads(body) == {"MaxConcurrentTransforms": 3, "BatchStrategy": "SINGLE_RECORD", "MaxPayloadInMB": 2}
        images = fashion_test_images[0]
        under = "\n".join(",".join(map(str, image.ravel())) for image in np.resize(images, (600, 28, 28, 1)))
        assert len(under) < 2 * 1048576
        status, _, payload = invoke(server.port, under.encode(), "text/csv", "text/csv")
        assert status == 200 and len(payload.decode().splitlines()) == 600
        status, _, payload = invoke(server.port, b"0" * (2 * 1048576 + 10), "text/csv")
        assert status == 413 and "2 MB payload limit" in json.loads(payload)["message"]
    assert "batch transform SINGLE_RECORD" in server.log_text()


@pytest.fixture(scope="module")
def server(trained_model_dir, tmp_path_factory):
    with LocalServer(trained_model_dir, log_path=tmp_path_factory.mktemp("ctx") / "server.log") as running:
        yield running


def test_json_lines_in_and_out_one_line_per_record(server, fashion_test_images):
    images = fashion_test_images[0]
    records = [{"image": b64(images[0])}, {"instances": [{"image": b64(images[1])}, {"image": b64(images[2])}]},
               images[3][..., 0].tolist(), {"image": b64(images[4])}]
    body = "\n".join(json.dumps(record) for record in records) + "\n\n"
    status, media, payload = invoke(server.port, body.encode(), "application/jsonlines", "application/jsonlines")
    assert status == 200 and media.startswith("application/jsonlines")
    lines = payload.decode().splitlines()
    assert [len(json.loads(line)["predictions"]) for line in lines] == [1, 2, 1, 1]
    # Each line is the JSON answer for its record alone.
    alone = json.loads(invoke(server.port, png_bytes(images[1]), "image/png")[2])["predictions"][0]
    assert json.loads(lines[1])["predictions"][0]["class_index"] == alone["class_index"]
    # JSON Lines out for another content type: one line per image.
    status, _, payload = invoke(server.port, "\n".join(",".join(map(str, im.ravel())) for im in images[:3]).encode(),
                                "text/csv", "application/jsonlines")
    assert status == 200 and len(payload.decode().splitlines()) == 3
    bad = (json.dumps({"image": b64(images[0])}) + "\nnot json\n").encode()
    status, _, payload = invoke(server.port, bad, "application/jsonlines")
    assert status == 400 and "line 2 is not valid JSON" in json.loads(payload)["message"]


def test_custom_attributes_reach_the_handler_and_come_back(server, fashion_test_images):
    body = png_bytes(fashion_test_images[0][0])
    status, headers, _ = request(server.port, "POST", "/invocations", body,
                                 {"Content-Type": "image/png", "X-Amzn-SageMaker-Custom-Attributes":
                                  "trace_id=run-7;colour=blue"})
    assert status == 200 and headers["x-amzn-sagemaker-custom-attributes"] == "trace_id=run-7"
    status, headers, _ = request(server.port, "POST", "/invocations", body,
                                 {"Content-Type": "image/png", "X-Amzn-SageMaker-Custom-Attributes": "no pairs here"})
    assert status == 200 and "x-amzn-sagemaker-custom-attributes" not in headers  # unknown: ignored


CONTEXT_OVERRIDE = '''
import json

from inference import handler as convlab


def input_fn(body, content_type, context):
    context.seen = context.custom_attributes
    return convlab.input_fn(body, content_type)   # no context passed on: convlab finds it anyway


def output_fn(prediction, accept, context=None):
    body, media = convlab.output_fn(prediction, "application/json")
    document = json.loads(body)
    document["attributes"] = context.seen
    context.set_response_header(0, "X-Amzn-SageMaker-Custom-Attributes", "answered=" + str(len(document["predictions"])))
    return json.dumps(document), media
'''


def test_an_override_takes_the_context_as_an_argument_or_a_keyword(trained_model_dir, fashion_test_images, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(trained_model_dir, model_dir)
    (model_dir / "code").mkdir(exist_ok=True)
    (model_dir / "code" / "inference.py").write_text(CONTEXT_OVERRIDE)
    with LocalServer(model_dir, log_path=tmp_path / "context.log") as server:
        status, headers, payload = request(server.port, "POST", "/invocations",
                                           png_bytes(fashion_test_images[0][0]),
                                           {"Content-Type": "image/png",
                                            "X-Amzn-SageMaker-Custom-Attributes": "tenant=lab"})
    assert status == 200, payload
    assert json.loads(payload)["attributes"] == "tenant=lab"
    assert headers["x-amzn-sagemaker-custom-attributes"] == "answered=1"


BARE_BODY_OVERRIDE = '''
import json


def output_fn(prediction, accept):
    return json.dumps({"top": [int(row.argmax()) for row in prediction["probabilities"]], "accept": accept})
'''


def test_an_output_fn_returning_a_bare_body_answers_with_the_accept_type(trained_model_dir, fashion_test_images,
                                                                         tmp_path):
    """sagemaker-inference's rule: output_fn may return the body alone; it goes out as the Accept type."""
    model_dir = tmp_path / "model"
    shutil.copytree(trained_model_dir, model_dir)
    (model_dir / "code").mkdir(exist_ok=True)
    (model_dir / "code" / "inference.py").write_text(BARE_BODY_OVERRIDE)
    images = fashion_test_images[0][:3]
    with LocalServer(trained_model_dir, log_path=tmp_path / "plain.log") as plain:
        expected = [json.loads(invoke(plain.port, png_bytes(image), "image/png")[2])["predictions"][0]["class_index"]
                    for image in images]
    with LocalServer(model_dir, log_path=tmp_path / "bare.log") as server:
        answers = [invoke(server.port, png_bytes(image), "image/png", "application/json") for image in images]
    assert all(status == 200 and media == "application/json" for status, media, _ in answers), answers
    assert [json.loads(payload)["top"][0] for _, _, payload in answers] == expected
    assert json.loads(answers[0][2])["accept"] == "application/json"


SLOW_OVERRIDE = '''
import time
from pathlib import Path

from inference import handler as convlab

HERE = Path(__file__).parent


def predict_fn(data, model):
    if (data[:, 0, 0, 0] > 0.99).any():   # the one input with a white top-left pixel is slow
        (HERE / "slow-started").touch()
        time.sleep(SLEEP)
    return convlab.predict_fn(data, model)


predict_fn.row_wise = True
predict_fn.per_row_outputs = ("probabilities",)
'''


@pytest.mark.parametrize("row_wise", [True, False], ids=["micro-batched", "own-call"])
def test_a_stuck_prediction_does_not_hold_up_the_requests_after_it(trained_model_dir, fashion_test_images, tmp_path,
                                                                    row_wise):
    sleep, timeout = 8.0, 1
    model_dir = tmp_path / "model"
    shutil.copytree(trained_model_dir, model_dir)
    (model_dir / "code").mkdir(exist_ok=True)
    source = SLOW_OVERRIDE.replace("SLEEP", repr(sleep))
    if not row_wise:
        source = source.replace("predict_fn.row_wise = True", "")
    (model_dir / "code" / "inference.py").write_text(source)
    images = fashion_test_images[0][:12].copy()
    slow_image = images[0].copy()
    slow_image[0, 0, 0] = 255
    normal = [image for image in images[1:] if image[0, 0, 0] < 250]
    env = {"SAGEMAKER_MODEL_SERVER_TIMEOUT": str(timeout)}
    with LocalServer(model_dir, env=env, log_path=tmp_path / "slow.log") as server:
        slow_answer = []
        slow = threading.Thread(target=lambda: slow_answer.append(invoke(server.port, png_bytes(slow_image),
                                                                          "image/png")))
        started = time.perf_counter()
        slow.start()
        while not (model_dir / "code" / "slow-started").exists():
            assert time.perf_counter() - started < 20, server.log_text()[-2000:]
            time.sleep(0.01)
        latencies = []
        for image in normal:
            sent = time.perf_counter()
            status, _, payload = invoke(server.port, png_bytes(image), "image/png")
            latencies.append(time.perf_counter() - sent)
            assert status == 200, payload
        finished = time.perf_counter() - started
        slow.join(30)
        assert slow_answer[0][0] == 504
        ping = json.loads(request(server.port, "GET", "/ping")[2])
    assert finished < sleep / 2, f"normal requests ended {finished:.2f} s after the slow one began"
    assert max(latencies) < sleep / 4, latencies
    assert ping["status"] == "ready"
