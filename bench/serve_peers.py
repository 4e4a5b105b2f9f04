"""The other servers bench/serve_bench.py measures convlab's against, on the same model and client.

- bare: uvicorn + Starlette (the same HTTP stack as convlab's server) answering every POST with a
  fixed 80-byte JSON after reading the body: the transport ceiling, no model, no decoding.
- MLServer (SeldonIO): a custom runtime (an `MLModel` subclass with load() and predict()) running
  the same model.onnx with ONNX Runtime, adaptive batching on, reached over the V2 inference REST
  API (POST /v2/models/<name>/infer, a UINT8 tensor in the V2 JSON format). MLServer is installed
  in its own virtual environment under .cache/bench/, reused when present.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
MLSERVER_VENV = REPO / ".cache" / "bench" / "mlserver-venv"
# uvloop 0.22 breaks MLServer 1.7.1's inference workers at start (SeldonIO/MLServer#2286).
MLSERVER_PACKAGES = ["mlserver", "onnxruntime", "numpy", "uvloop<0.22"]
MLSERVER_MODEL = "fashion"

FIXED_REPLY = b'{"label":"Ankle boot","class_index":9,"probability":0.98765,"model":"bare-ceiling"}'

BARE_SERVER = '''
import sys
import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

REPLY = %r


async def ping(request):
    return Response(b"", status_code=200)


async def invocations(request):
    await request.body()
    return Response(REPLY, media_type="application/json")


app = Starlette(routes=[Route("/ping", ping), Route("/invocations", invocations, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_config=None, access_log=False, server_header=False)
''' % FIXED_REPLY

# The floor: Flask calling Keras model.predict per request, as many tutorials serve a model.
NAIVE_SERVER = '''
import io, json, sys
import numpy as np, keras
from flask import Flask, jsonify, request
from PIL import Image
from werkzeug.serving import make_server

model_dir, port = sys.argv[1], int(sys.argv[2])
model = keras.models.load_model(model_dir + "/model.keras")
classes = json.load(open(model_dir + "/labels.json"))
app = Flask("naive")


@app.get("/ping")
def ping():
    return "", 200


@app.post("/invocations")
def invocations():
    image = Image.open(io.BytesIO(request.get_data())).convert("L").resize((28, 28))
    x = np.asarray(image, np.float32)[None, :, :, None] / 255.0
    p = model.predict(x, verbose=0)[0]
    i = int(p.argmax())
    return jsonify({"label": classes[i], "class_index": i, "probabilities": dict(zip(classes, p.tolist()))})


make_server("127.0.0.1", port, app, threaded=True).serve_forever()
'''

# The same ONNX Runtime session options as convlab's ONNX backend (inference/backends.py), so the
# two servers differ in their serving code only.
MLSERVER_RUNTIME = '''
import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxImages(MLModel):
    async def load(self) -> bool:
        options = ort.SessionOptions()
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        path = await get_model_uri(self._settings)
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        pixels = NumpyCodec.decode_input(payload.inputs[0])
        scores = self.session.run(None, {self.input_name: pixels.astype(np.float32) / np.float32(255)})[0]
        return InferenceResponse(model_name=self.name,
                                 outputs=[NumpyCodec.encode_output("probabilities", scores)])
'''


def bare_command(scratch: Path, port: int) -> list[str]:
    script = scratch / "bare_server.py"
    script.write_text(BARE_SERVER)
    return [sys.executable, str(script), str(port)]


def mlserver_python() -> Path:
    """The MLServer environment's interpreter; created with `python -m venv` + pip on first use."""
    python = MLSERVER_VENV / "bin" / "python"
    marker = MLSERVER_VENV / ".installed"
    if python.is_file() and marker.is_file() and marker.read_text().startswith(" ".join(MLSERVER_PACKAGES)):
        return python
    print(f"installing {' '.join(MLSERVER_PACKAGES)} into {MLSERVER_VENV} (once) ...", flush=True)
    if not python.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(MLSERVER_VENV)], check=True)
    result = subprocess.run([str(python), "-m", "pip", "install", "-q", *MLSERVER_PACKAGES],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"pip install {' '.join(MLSERVER_PACKAGES)} into {MLSERVER_VENV} failed:\n"
                         f"{result.stderr[-2000:]}")
    freeze = subprocess.run([str(python), "-m", "pip", "freeze"], capture_output=True, text=True).stdout
    marker.write_text(" ".join(MLSERVER_PACKAGES) + "\n" + freeze)
    return python


def mlserver_version() -> str:
    result = subprocess.run([str(mlserver_python()), "-c", "import mlserver; print(mlserver.__version__)"],
                            capture_output=True, text=True)
    return result.stdout.strip() or "?"


def mlserver_repository(scratch: Path, model_dir: Path, ports: dict, max_batch_size: int,
                        max_batch_time: float) -> Path:
    """A model repository MLServer starts from: settings.json, and one model folder holding the
    runtime module, model-settings.json and the model.onnx."""
    root = scratch / "mlserver"
    folder = root / MLSERVER_MODEL
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "runtime.py").write_text(MLSERVER_RUNTIME)
    (folder / "model.onnx").write_bytes((model_dir / "model.onnx").read_bytes())
    (folder / "model-settings.json").write_text(json.dumps({
        "name": MLSERVER_MODEL, "implementation": "runtime.OnnxImages",
        "parameters": {"uri": "./model.onnx"},
        "max_batch_size": max_batch_size, "max_batch_time": max_batch_time}, indent=2))
    (root / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "http_port": ports["http"], "grpc_port": ports["grpc"],
        "metrics_port": ports["metrics"], "debug": False}, indent=2))
    return root


def mlserver_command(root: Path) -> list[str]:
    return [str(MLSERVER_VENV / "bin" / "python"), str(MLSERVER_VENV / "bin" / "mlserver"), "start", str(root)]


def wait_mlserver(process: subprocess.Popen, port: int, timeout: float = 120.0) -> float:
    """Seconds until GET /v2/models/<name>/ready answers 200."""
    from inference.local import request

    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"mlserver exited with code {process.returncode} before its model was ready")
        try:
            if request(port, "GET", f"/v2/models/{MLSERVER_MODEL}/ready", timeout=5)[0] == 200:
                return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"mlserver: /v2/models/{MLSERVER_MODEL}/ready did not answer 200 within {timeout:g} s")


def v2_body(image: np.ndarray) -> bytes:
    """One image as a V2 inference request: a UINT8 tensor [1, H, W, 1] in the JSON format."""
    tensor = {"name": "images", "shape": [1, *image.shape, 1], "datatype": "UINT8",
              "data": image.reshape(-1).tolist()}
    return json.dumps({"inputs": [tensor]}).encode()


def v2_scores(payload: bytes) -> np.ndarray:
    output = json.loads(payload)["outputs"][0]
    return np.asarray(output["data"], np.float32).reshape(output["shape"])


def environment_for(python: Path) -> dict:
    """The MLServer process must not see this repository's packages or its virtual environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    return env
