"""The serving program's dead ends, run as the serve-only image runs it: each ends in one line naming
the cause, without a traceback and without a "loaded ..." line. The server process is started for
real; the serve-only environment (no TensorFlow) is this interpreter with every installed package
but TensorFlow on its path."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from inference.local import free_port

ROOT = Path(__file__).resolve().parent.parent


def serve(python: str, model_dir: Path, port: int, env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run([python, "-m", "inference.server", "--model-dir", str(model_dir), "--host", "127.0.0.1",
                           "--port", str(port)], capture_output=True, text=True, timeout=180, env=environ, cwd=ROOT)


def ends_in_one_line(done: subprocess.CompletedProcess, *words: str) -> str:
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and " loaded " not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("serve: ") and all(word in last for word in words), last
    return last


@pytest.fixture(scope="module")
def serve_only_python(tmp_path_factory) -> tuple[str, dict]:
    """(interpreter, environment) with the installed packages except TensorFlow, as in the serve-only image."""
    site = Path(sysconfig.get_paths()["purelib"])
    overlay = tmp_path_factory.mktemp("serve-only-site")
    for entry in site.iterdir():
        if not entry.name.lower().startswith(("tensorflow", "tf_keras", "keras", "tf2onnx")):
            (overlay / entry.name).symlink_to(entry)
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    python = str(base if base.exists() else sys.executable)
    probe = subprocess.run([python, "-c", "import importlib.util as u; print(u.find_spec('tensorflow'))"],
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(overlay)})
    assert probe.stdout.strip() == "None", probe.stdout + probe.stderr
    return python, {"PYTHONPATH": os.pathsep.join([str(ROOT), str(overlay)])}


def test_only_a_savedmodel_in_the_serve_only_environment(serve_only_python, trained_model_dir, tmp_path):
    python, env = serve_only_python
    model_dir = tmp_path / "model"
    shutil.copytree(trained_model_dir, model_dir, ignore=shutil.ignore_patterns("*.onnx", "model.keras"))
    done = serve(python, model_dir, free_port(), env)
    ends_in_one_line(done, str(model_dir), "no model.onnx, and TensorFlow is not installed")


def test_a_corrupt_model_onnx(trained_model_dir, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(trained_model_dir, model_dir)
    (model_dir / "model.onnx").write_bytes((model_dir / "model.onnx").read_bytes()[:500])
    done = serve(sys.executable, model_dir, free_port())
    ends_in_one_line(done, f"{model_dir / 'model.onnx'}: not a model ONNX Runtime can load", "tf2onnx")


def test_a_port_already_in_use(trained_model_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = serve(sys.executable, trained_model_dir, port)
    last = ends_in_one_line(done, f"cannot listen on 127.0.0.1:{port}", "--port")
    assert done.stderr.strip() == last  # nothing before it: the model is not even loaded
