"""Run the model server as a child process on this machine and talk to it over HTTP.

Used by `convlab serve`-style demos, the benchmark and the tests: the server is the real one
(`python -m inference.server`), reached through a real socket.
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_ports(count: int) -> list[int]:
    """Distinct free ports on 127.0.0.1 (all held until every one is chosen)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    return free_ports(1)[0]


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            host: str = "127.0.0.1", timeout: float = 30.0) -> tuple[int, dict, bytes]:
    """One HTTP request on a fresh connection: (status, lower-cased headers, body)."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def invoke(port: int, body: bytes, content_type: str | None, accept: str | None = None,
           host: str = "127.0.0.1") -> tuple[int, str, bytes]:
    """POST /invocations: (status, response content type, body)."""
    headers = {}
    if content_type:
        headers["Content-Type"] = content_type
    if accept:
        headers["Accept"] = accept
    status, response_headers, payload = request(port, "POST", "/invocations", body, headers, host)
    return status, response_headers.get("content-type", ""), payload


class LocalServer:
    """`python -m inference.server` in a child process; stop() sends SIGTERM and waits."""

    def __init__(self, model_dir, port: int | None = None, args: list[str] | None = None,
                 env: dict | None = None, log_path=None, command: list[str] | None = None):
        self.model_dir = str(model_dir)
        self.port = port or free_port()
        self.args = list(args or [])
        self.env = env or {}
        self.log_path = Path(log_path) if log_path else None
        self.command = command
        self.process: subprocess.Popen | None = None
        self.started_at = 0.0

    def start(self) -> "LocalServer":
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **self.env}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        command = self.command or [sys.executable, "-m", "inference.server", "--model-dir", self.model_dir,
                                   "--host", "127.0.0.1", "--port", str(self.port), *self.args]
        # Append mode: worker processes share this file and must not overwrite each other.
        output = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.started_at = time.perf_counter()
        self.process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        if self.log_path:
            output.close()
        return self

    def ping(self) -> int | None:
        """The /ping status, or None while nothing listens."""
        try:
            return request(self.port, "GET", "/ping", timeout=5)[0]
        except OSError:
            return None

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Wait for /ping 200; return seconds since start(). Raises if the process exits first."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with code {self.process.returncode} before it was ready"
                                   f"{self._log_tail()}")
            if self.ping() == 200:
                return time.perf_counter() - self.started_at
            time.sleep(0.01)
        raise TimeoutError(f"the server did not answer /ping 200 within {timeout:g} s{self._log_tail()}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait; returns the exit code (kills it after `timeout`)."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def _log_tail(self) -> str:
        text = self.log_text()
        return f"; log:\n{text[-3000:]}" if text else ""

    def __enter__(self) -> "LocalServer":
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def predict_files(port: int, paths: list, host: str = "127.0.0.1") -> list[dict]:
    """POST each image file (PNG/JPEG) and return the JSON predictions, one per file."""
    results = []
    for path in paths:
        body = Path(path).read_bytes()
        status, _, payload = invoke(port, body, "application/x-image", "application/json", host)
        document = json.loads(payload)
        if status != 200:
            raise RuntimeError(f"{path}: the server answered {status}: {document.get('message', document)}")
        results.extend(document["predictions"])
    return results
