"""The server at its edges, as a real process over real sockets, with small numpy models behind a
user code/inference.py (tests/serving_models.py): how batched answers are split, who owns a call's
timeout, a hung model, SIGTERM with requests waiting, the output_fn rule, output work off the event
loop, and which side of the 4xx/5xx line an error lands on."""
from __future__ import annotations

import http.client
import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from inference.local import LocalServer, invoke, request
from tests import serving_models
from tests.serving_models import HANG, SLOW, TIMEOUT, images, thread_count

SPLIT = '''
def predict_fn(data, model):
    sums = behave(data)
    return {"sums": sums.tolist(), "names": np.array([f"class-{i}" for i in range(10)])}


predict_fn.row_wise = True
predict_fn.per_row_outputs = ("sums",)


def output_fn(prediction, accept):
    names = [str(name) for name in prediction["names"]]
    return json.dumps({"sums": prediction["sums"], "names": names}), "application/json"
'''

SEEN = '''
from inference.context import current


def predict_fn(data, model):
    context = current()
    seen = context is not None and context.model is model and context.request_content_type == "application/x-npy"
    return {"sums": behave(data), "context": np.array([seen] * len(data))}


predict_fn.row_wise = True
predict_fn.per_row_outputs = ("sums", "context")


def output_fn(prediction, accept):
    return json.dumps({key: value.tolist() for key, value in prediction.items()}), "application/json"
'''

PLAIN = '''
def predict_fn(data, model):
    return behave(data)


def output_fn(prediction, accept):
    return json.dumps({"sums": prediction.tolist()}), "application/json"
'''

ROWS = PLAIN + '''
predict_fn.row_wise = True
'''

ANSWERS = '''
import asyncio

from inference.errors import BadInput


def input_fn(body, content_type):
    if content_type == "application/x-bug":
        return {}["a key the user forgot"]
    if content_type == "application/x-memory":
        raise MemoryError()
    if content_type == "application/json":
        return np.asarray(json.loads(body), np.float32)
    if content_type == "application/x-typed":
        raise BadInput("the typed client error")
    return np.load(io.BytesIO(body))


def predict_fn(data, model):
    return behave(data)


def output_fn(prediction, accept):
    if accept == "application/x-int":
        return len(prediction)
    if accept == "application/x-two":
        return "ok"
    if accept == "application/x-view":
        return memoryview(b"viewed")
    if accept == "application/x-where":
        try:
            asyncio.get_running_loop()
            return json.dumps({"on_loop": True})
        except RuntimeError:
            return json.dumps({"on_loop": False})
    return prediction
'''


def serve(tmp_path, handler: str, env: dict | None = None, name: str = "model") -> LocalServer:
    model_dir = serving_models.model_dir(tmp_path / name, handler)
    return LocalServer(model_dir, env=env or {}, log_path=tmp_path / f"{name}.log")


def ping(server) -> tuple[int, dict]:
    status, _, body = request(server.port, "GET", "/ping", timeout=5)
    return status, json.loads(body)


def wait_for_file(path, server, limit: float = 20) -> None:
    deadline = time.perf_counter() + limit
    while not path.exists():
        assert time.perf_counter() < deadline, server.log_text()[-2000:]
        time.sleep(0.01)


def test_batched_answers_split_only_the_declared_per_row_outputs(tmp_path):
    env = {"CONVLAB_STALL_MS": "10000", "SLOW_S": "0.6"}
    with serve(tmp_path, SPLIT, env) as server:
        slow = threading.Thread(target=invoke, args=(server.port, images(SLOW), "application/x-npy"))
        slow.start()
        wait_for_file(Path(server.model_dir) / "code" / "slow", server)
        with ThreadPoolExecutor(10) as pool:  # queued behind the slow call: one call of 10 rows
            answers = list(pool.map(lambda m: invoke(server.port, images(m), "application/x-npy"), range(1, 11)))
        slow.join(10)
        calls = ping(server)[1]["batched_model_calls"]
    for marker, (status, _, payload) in zip(range(1, 11), answers):
        assert status == 200, payload
        document = json.loads(payload)
        assert document["sums"] == [4.0 * marker]
        assert document["names"] == [f"class-{i}" for i in range(10)]
    assert calls < 11  # they were batched

    undeclared = SPLIT.replace('predict_fn.per_row_outputs = ("sums",)', "")
    with serve(tmp_path, undeclared, name="undeclared") as server:
        status, _, payload = invoke(server.port, images(1), "application/x-npy")
    assert status == 500
    assert "per_row_outputs" in json.loads(payload)["message"]


def test_predict_fn_gets_the_context_in_batched_calls_too(tmp_path):
    env = {"CONVLAB_STALL_MS": "10000", "SLOW_S": "0.6"}
    with serve(tmp_path, SEEN, env) as server:
        slow = threading.Thread(target=invoke, args=(server.port, images(SLOW), "application/x-npy"))
        slow.start()
        wait_for_file(Path(server.model_dir) / "code" / "slow", server)
        with ThreadPoolExecutor(4) as pool:  # queued behind the slow call: batched together
            answers = list(pool.map(lambda m: invoke(server.port, images(m), "application/x-npy"), range(1, 5)))
        slow.join(10)
        calls = ping(server)[1]["batched_model_calls"]
    assert [json.loads(payload) for _, _, payload in answers] == [{"sums": [4.0 * m], "context": [True]}
                                                                  for m in range(1, 5)]
    assert calls < 5


def test_a_timed_out_call_is_counted_once_and_answered_504(tmp_path):
    env = {"SAGEMAKER_MODEL_SERVER_TIMEOUT": "1", "HANG_S": "3"}
    with serve(tmp_path, PLAIN, env) as server:
        started = time.perf_counter()
        status, _, payload = invoke(server.port, images(HANG), "application/x-npy")
        took = time.perf_counter() - started
        assert status == 504 and "SAGEMAKER_MODEL_SERVER_TIMEOUT" in json.loads(payload)["message"]
        assert 0.9 < took < 2.5
        assert ping(server)[1]["abandoned_model_calls"] == 1


def test_a_hung_model_keeps_its_threads_bounded_and_fails_ping_until_it_recovers(tmp_path):
    env = {"SAGEMAKER_MODEL_SERVER_TIMEOUT": "0.5", "HANG_S": "4", "CONVLAB_MODEL_THREADS": "2"}
    with serve(tmp_path, PLAIN, env) as server:
        assert invoke(server.port, images(1), "application/x-npy")[0] == 200
        before = thread_count(server.process.pid)
        started = time.perf_counter()
        statuses = [invoke(server.port, images(HANG), "application/x-npy")[0] for _ in range(5)]
        assert statuses == [504] * 5
        assert thread_count(server.process.pid) - before <= 2
        status, document = ping(server)
        assert status == 503 and "wedged" in document["status"], document
        while time.perf_counter() - started < 15 and ping(server)[0] != 200:
            time.sleep(0.2)  # the hung calls return after HANG_S
        assert ping(server)[0] == 200
        status, _, payload = invoke(server.port, images(1), "application/x-npy")
        assert status == 200 and json.loads(payload)["sums"] == [4.0]
    assert "wedged" in server.log_text()


def test_sigterm_answers_every_waiting_request(tmp_path):
    env = {"SAGEMAKER_MODEL_SERVER_TIMEOUT": "1.9", "HANG_S": "10", "CONVLAB_STALL_MS": "10000"}
    server = serve(tmp_path, ROWS, env)
    with server:
        results: dict[int, object] = {}

        def send(marker: float) -> None:
            try:
                results[marker] = invoke(server.port, images(marker), "application/x-npy")[0]
            except (OSError, http.client.HTTPException) as exc:
                results[marker] = exc

        clients = [threading.Thread(target=send, args=(HANG,))]
        clients[0].start()
        wait_for_file(Path(server.model_dir) / "code" / "hanging", server)
        clients += [threading.Thread(target=send, args=(m,)) for m in (1.0, 2.0)]
        for client in clients[1:]:
            client.start()
        time.sleep(0.2)
        code = server.stop()
        for client in clients:
            client.join(30)
    assert code == 0, server.log_text()[-2000:]
    assert sorted(results) == [1.0, 2.0, HANG]
    assert all(status in (503, 504) for status in results.values()), results


def test_output_fn_bodies_follow_the_toolkits_rule(tmp_path):
    with serve(tmp_path, ANSWERS) as server:
        body = images(1)
        status, media, payload = invoke(server.port, body, "application/x-npy", "application/x-int")
        assert status == 500 and "output_fn returned an int" in json.loads(payload)["message"], payload
        assert invoke(server.port, body, "application/x-npy", "application/x-two") == (200, "application/x-two", b"ok")
        assert invoke(server.port, body, "application/x-npy", "application/x-view")[2] == b"viewed"
        status, media, payload = invoke(server.port, images(1, 2), "application/x-npy", "application/json")
        assert (status, media, json.loads(payload)) == (200, "application/json", [4.0, 8.0])
        status, media, payload = invoke(server.port, images(1, 2), "application/x-npy", "text/csv")
        assert status == 200 and media.startswith("text/csv") and payload.decode().split() == ["4.0", "8.0"]
        status, _, payload = invoke(server.port, images(1, 2), "application/x-npy", "application/x-npy")
        assert status == 200 and np.load(io.BytesIO(payload)).tolist() == [4.0, 8.0]


def test_only_decoding_and_typed_errors_are_the_clients(tmp_path):
    with serve(tmp_path, ANSWERS) as server:
        for content_type, expected in (("application/x-bug", 500), ("application/x-memory", 500),
                                       ("application/x-typed", 400), ("application/json", 400)):
            status, _, payload = invoke(server.port, b"{not json", content_type)
            assert status == expected, (content_type, payload)
        assert ping(server)[0] == 200
    log = server.log_text()
    assert "Traceback" in log and "a key the user forgot" in log and "MemoryError" in log


def test_a_timeout_raised_inside_predict_fn_is_a_500_not_the_servers_504(tmp_path):
    with serve(tmp_path, ANSWERS) as server:
        status, _, payload = invoke(server.port, images(TIMEOUT), "application/x-npy")
    assert status == 500 and "feature store" in json.loads(payload)["message"], payload
    assert "socket.timeout" in server.log_text() or "TimeoutError" in server.log_text()


def test_large_outputs_are_encoded_off_the_event_loop(tmp_path):
    with serve(tmp_path, ANSWERS) as server:
        small = invoke(server.port, images(1), "application/x-npy", "application/x-where")
        large = invoke(server.port, images(1, rows=20000), "application/x-npy", "application/x-where")
    assert small[0] == large[0] == 200
    assert json.loads(small[2]) == {"on_loop": True}  # small answers stay on the loop: no hand-off
    assert json.loads(large[2]) == {"on_loop": False}
