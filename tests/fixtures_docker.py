"""Docker fixtures: the engine, convlab's two images (built once per test run), and helpers that run
the README's docker scripts. Without a Docker engine every container test skips with one line
saying why; `make test` as root with apt installs and starts one (scripts/setup_machine.sh)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from inference.local import free_port

REPO = Path(__file__).resolve().parent.parent
FULL_IMAGE = "convlab:latest"
SERVE_IMAGE = "convlab-serve:latest"


def cli_env() -> dict:
    """The environment of a user's shell: this venv's python and convlab first on PATH."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def run(command: list[str], timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=kwargs.pop("cwd", REPO),
                          env=kwargs.pop("env", cli_env()), **kwargs)


@pytest.fixture(scope="session")
def docker_engine() -> str:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("container tests: no `docker` command (make test installs docker.io as root with apt)")
    info = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                          timeout=60)
    if info.returncode != 0:
        pytest.skip("container tests: no Docker engine answers `docker info` "
                    "(make test starts dockerd as root: scripts/setup_machine.sh)")
    return info.stdout.strip()


def _build(*args: str) -> str:
    started = time.perf_counter()
    result = run(["bash", str(REPO / "scripts" / "docker_build.sh"), *args], timeout=1800)
    assert result.returncode == 0, f"docker_build.sh {' '.join(args)} failed:\n{result.stdout[-3000:]}\n" \
                                   f"{result.stderr[-3000:]}"
    print(f"\n{result.stdout.strip().splitlines()[-1]} in {time.perf_counter() - started:.0f} s")
    return result.stdout


@pytest.fixture(scope="session")
def convlab_image(docker_engine) -> str:
    """The full image (`train` and `serve`), built from the working tree once per run."""
    _build(FULL_IMAGE)
    return FULL_IMAGE


@pytest.fixture(scope="session")
def serve_image(docker_engine) -> str:
    """The serve-only image (ONNX Runtime, no TensorFlow)."""
    _build("--serve-only", SERVE_IMAGE)
    return SERVE_IMAGE


def image_size_mb(image: str) -> float:
    out = run(["docker", "image", "inspect", "-f", "{{.Size}}", image], timeout=60).stdout
    return int(out.strip()) / 1e6


def wait_for_ping(port: int, timeout: float = 60, process: subprocess.Popen | None = None) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode} before /ping answered")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as response:
                if response.status == 200:
                    return json.loads(response.read() or b"{}")
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"no /ping 200 on port {port} within {timeout} s ({last})")


class ServedContainer:
    """scripts/docker_serve.sh MODEL_DIR --host-network --port P --name N, as the README shows it."""

    def __init__(self, model_dir: Path, image: str, log_path: Path):
        self.model_dir, self.image, self.log_path = Path(model_dir), image, Path(log_path)
        self.port = free_port()
        self.name = f"convlab-test-{uuid.uuid4().hex[:8]}"
        self.process: subprocess.Popen | None = None

    def start(self) -> "ServedContainer":
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            ["bash", str(REPO / "scripts" / "docker_serve.sh"), str(self.model_dir), "--image", self.image,
             "--port", str(self.port), "--host-network", "--name", self.name],
            stdout=self._log, stderr=subprocess.STDOUT, env=cli_env(), cwd=REPO)
        return self

    def wait_ready(self, timeout: float = 90) -> dict:
        return wait_for_ping(self.port, timeout, self.process)

    def stop(self, timeout: float = 60) -> int:
        subprocess.run(["docker", "stop", "-t", "30", self.name], capture_output=True, timeout=timeout)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self._log.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> "ServedContainer":
        self.start()
        try:
            self.wait_ready()
        except AssertionError:
            self.stop()
            raise AssertionError(f"container did not become ready:\n{self.log_text()[-3000:]}")
        return self

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop()
        subprocess.run(["docker", "rm", "-f", self.name], capture_output=True, timeout=60)
