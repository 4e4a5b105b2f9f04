"""The local batch transform runs a user's handler as the server does: the same output_fn rule,
and the same request context for predict_fn whether requests are predicted alone or stacked."""
from __future__ import annotations

import io
import json

import numpy as np

from deploy.stores import LocalStore
from deploy.transform import Handler, run_transform
from tests import serving_models

CONTEXT = '''
from inference.context import current


def predict_fn(data, model):
    context = current()
    seen = context is not None and context.model is model and context.accept_header == "application/json"
    return {"sums": behave(data), "context": np.array([seen] * len(data))}


predict_fn.row_wise = True
predict_fn.per_row_outputs = ("sums", "context")


def output_fn(prediction, accept):
    return json.dumps({key: value.tolist() for key, value in prediction.items()}), "application/json"
'''

BARE = '''
def predict_fn(data, model):
    return behave(data)


def output_fn(prediction, accept):
    if accept == "application/x-int":
        return len(prediction)
    if accept == "application/x-two":
        return "ok"
    return b"raw bytes"
'''


def inputs(folder, count: int):
    folder.mkdir()
    for index in range(count):
        buffer = io.BytesIO()
        np.save(buffer, np.full((1, 2, 2, 1), index + 1, np.float32))
        (folder / f"in-{index}.npy").write_bytes(buffer.getvalue())
    return folder


def transform(model_dir, source, dest, accept="application/json", batch_size=4):
    return run_transform(LocalStore(source), LocalStore(dest), Handler(model_dir, accept=accept),
                         batch_size=batch_size, workers=2, progress=False)


def test_predict_fn_gets_the_context_in_stacked_calls_too(tmp_path):
    model_dir = serving_models.model_dir(tmp_path / "model", CONTEXT)
    source = inputs(tmp_path / "in", 10)
    summary = transform(model_dir, source, tmp_path / "out")
    assert (summary.written, summary.failed) == (10, 0), summary.failures
    for index in range(10):
        document = json.loads((tmp_path / "out" / f"in-{index}.npy.out").read_bytes())
        assert document == {"sums": [4.0 * (index + 1)], "context": [True]}, index


def test_output_fn_bodies_follow_the_servers_rule(tmp_path):
    model_dir = serving_models.model_dir(tmp_path / "model", BARE)
    source = inputs(tmp_path / "in", 2)
    summary = transform(model_dir, source, tmp_path / "bytes", accept="application/x-bytes")
    assert summary.written == 2, summary.failures
    assert (tmp_path / "bytes" / "in-0.npy.out").read_bytes() == b"raw bytes"
    summary = transform(model_dir, source, tmp_path / "two", accept="application/x-two")
    assert summary.written == 2, summary.failures
    assert (tmp_path / "two" / "in-1.npy.out").read_bytes() == b"ok"
    summary = transform(model_dir, source, tmp_path / "int", accept="application/x-int")
    assert summary.failed == 2 and summary.written == 0
    assert all("output_fn returned an int" in failure.error for failure in summary.failures), summary.failures
