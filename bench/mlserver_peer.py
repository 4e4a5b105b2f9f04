"""MLServer (SeldonIO) as serve_bench's peer, in the configurations that are its best on this model.

A custom runtime (an `MLModel` subclass with load() and predict()) runs the same model.onnx with
ONNX Runtime behind the V2 inference REST API (POST /v2/models/<name>/infer, a UINT8 tensor in the
V2 JSON format). MLServer is installed with httptools (uvicorn's fast HTTP parser, which uvicorn
picks when it is importable) in its own virtual environment under .cache/bench/, reused when present.

Configurations (each a separate server, all driven in the same turns as convlab's):
- inproc:       the model in the server process (`parallel_workers: 0`), no adaptive batching;
- inproc-batch: in process, adaptive batching (16 requests, 2 ms);
- workers:      one inference worker process (MLServer's default layout), adaptive batching (16, 1 ms).
The best of them at each client count is the peer convlab's ratios are computed against.
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
MLSERVER_PACKAGES = ["mlserver", "onnxruntime", "numpy", "uvloop<0.22", "httptools"]
MLSERVER_MODEL = "fashion"
CONFIGS = {
    "inproc": {"parallel_workers": 0, "max_batch_size": 1, "max_batch_time": 0.0},
    "inproc-batch": {"parallel_workers": 0, "max_batch_size": 16, "max_batch_time": 0.002},
    "workers": {"parallel_workers": 1, "max_batch_size": 16, "max_batch_time": 0.001},
}

# The same ONNX Runtime session options as convlab's ONNX backend (inference/backends.py), so the
# two servers differ in their serving code only.
RUNTIME = '''
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


def python() -> Path:
    """The MLServer environment's interpreter; created with `python -m venv` + pip on first use."""
    interpreter = MLSERVER_VENV / "bin" / "python"
    marker = MLSERVER_VENV / ".installed"
    if interpreter.is_file() and marker.is_file() and marker.read_text().startswith(" ".join(MLSERVER_PACKAGES)):
        return interpreter
    print(f"installing {' '.join(MLSERVER_PACKAGES)} into {MLSERVER_VENV} (once) ...", flush=True)
    if not interpreter.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(MLSERVER_VENV)], check=True)
    result = subprocess.run([str(interpreter), "-m", "pip", "install", "-q", *MLSERVER_PACKAGES],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"pip install {' '.join(MLSERVER_PACKAGES)} into {MLSERVER_VENV} failed:\n"
                         f"{result.stderr[-2000:]}")
    freeze = subprocess.run([str(interpreter), "-m", "pip", "freeze"], capture_output=True, text=True).stdout
    marker.write_text(" ".join(MLSERVER_PACKAGES) + "\n" + freeze)
    return interpreter


def version() -> str:
    result = subprocess.run([str(python()), "-c", "import mlserver; print(mlserver.__version__)"],
                            capture_output=True, text=True)
    return result.stdout.strip() or "?"


def repository(scratch: Path, model_dir: Path, name: str, ports: dict) -> Path:
    """A model repository MLServer starts from: settings.json (the configuration's process layout),
    and one model folder with the runtime module, model-settings.json (its batching) and model.onnx."""
    config = CONFIGS[name]
    root = scratch / f"mlserver-{name}"
    folder = root / MLSERVER_MODEL
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "runtime.py").write_text(RUNTIME)
    (folder / "model.onnx").write_bytes((model_dir / "model.onnx").read_bytes())
    (folder / "model-settings.json").write_text(json.dumps({
        "name": MLSERVER_MODEL, "implementation": "runtime.OnnxImages", "parameters": {"uri": "./model.onnx"},
        "max_batch_size": config["max_batch_size"], "max_batch_time": config["max_batch_time"]}, indent=2))
    (root / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "http_port": ports["http"], "grpc_port": ports["grpc"],
        "metrics_port": ports["metrics"], "parallel_workers": config["parallel_workers"], "debug": False}, indent=2))
    return root


def start(scratch: Path, model_dir: Path, name: str, ports: dict) -> tuple[subprocess.Popen, float]:
    """(process, seconds to model ready) of MLServer in configuration `name`."""
    interpreter = python()
    root = repository(scratch, model_dir, name, ports)
    log_path = scratch / f"mlserver-{name}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen([str(interpreter), str(MLSERVER_VENV / "bin" / "mlserver"), "start", str(root)],
                                   cwd=root, stdout=log, stderr=subprocess.STDOUT, env=environment_for(interpreter))
    try:
        return process, wait_ready(process, ports["http"])
    except (RuntimeError, TimeoutError):
        process.kill()
        print(log_path.read_text(errors="replace")[-3000:], file=sys.stderr)
        raise


def wait_ready(process: subprocess.Popen, port: int, timeout: float = 120.0) -> float:
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


def environment_for(interpreter: Path) -> dict:
    """The MLServer process must not see this repository's packages or its virtual environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{interpreter.parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def best(results: dict, clients: int) -> tuple[str, dict] | None:
    """(configuration, row) of the MLServer configuration with the most requests/s at `clients`."""
    rows = [(key.split("/")[0].split(":", 1)[1], row) for key, row in results.items()
            if key.startswith("mlserver:") and key.endswith(f"/{clients}")]
    return max(rows, key=lambda pair: pair[1]["rps"]) if rows else None
