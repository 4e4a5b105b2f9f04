"""Small model_dirs for serving tests: a numpy model behind a user code/inference.py, so a real
server process starts in about a second, and a user handler decides how each call behaves.

Images are 2x2x1 arrays sent as application/x-npy; the first pixel of a batch's first image picks
a behaviour in the handlers below (99: the call hangs for HANG_S seconds).
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np

HANG, TIMEOUT, SLOW = 99.0, 98.0, 97.0

COMMON = '''
import io
import json
import os
import socket
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
HANG_S = float(os.environ.get("HANG_S", "30"))


class Preprocessing:
    shape = (2, 2, 1)


class Model:
    preprocessing = Preprocessing()
    info = {"backend": "numpy"}


def model_fn(model_dir):
    return Model()


def input_fn(body, content_type):
    return np.load(io.BytesIO(body))


def behave(data):
    """The first pixel of the first image: 99 hangs, 98 raises socket.timeout, 97 holds the model
    for SLOW_S seconds (requests sent meanwhile queue up for the next call)."""
    marker = float(data[0, 0, 0, 0])
    if marker == 97:
        (HERE / "slow").touch()
        time.sleep(float(os.environ.get("SLOW_S", "0.5")))
    if marker == 99:
        (HERE / "hanging").touch()
        time.sleep(HANG_S)
    if marker == 98:
        raise socket.timeout("the feature store did not answer in time")
    return data.reshape(len(data), -1).sum(axis=1)
'''


def model_dir(root: Path, handler: str) -> Path:
    """A model_dir whose code/inference.py is COMMON followed by `handler`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "labels.json").write_text(json.dumps(["even", "odd"]))
    (root / "config.json").write_text(json.dumps(
        {"preprocessing": {"height": 2, "width": 2, "channels": 1, "rescale": 1.0, "color_mode": "L"}}))
    (root / "code").mkdir(exist_ok=True)
    (root / "code" / "inference.py").write_text(COMMON + handler)
    return root


def images(*markers: float, rows: int = 1) -> bytes:
    """An npy body: one batch of `rows` 2x2x1 images per marker, the marker in every pixel."""
    batch = np.concatenate([np.full((rows, 2, 2, 1), marker, np.float32) for marker in markers])
    buffer = io.BytesIO()
    np.save(buffer, batch)
    return buffer.getvalue()


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))
