"""`serve`: the SageMaker model server (uvicorn running inference.app).

    python -m inference.server --model-dir DIR [--port N] [--host H]
    convlab serve --model-dir DIR          (the same server: local mode without Docker)
    serve                                  (in the container: model from /opt/ml/model)

Settings come from flags, else the SageMaker variables: SAGEMAKER_BIND_TO_PORT (8080),
SAGEMAKER_MODEL_SERVER_WORKERS (1), SAGEMAKER_MODEL_SERVER_TIMEOUT (60 s), and those SageMaker sets
in a batch transform container: SAGEMAKER_BATCH (true there), SAGEMAKER_MAX_PAYLOAD_IN_MB (the
payload limit; 0 means SageMaker's largest, 100), SAGEMAKER_BATCH_STRATEGY (SINGLE_RECORD |
MULTI_RECORD), SAGEMAKER_MAX_CONCURRENT_TRANSFORMS; GET /execution-parameters reflects the last
three. Then convlab's: CONVLAB_OPT_ML (root replacing /opt/ml), CONVLAB_MAX_PAYLOAD_MB (6),
CONVLAB_BACKEND (auto), CONVLAB_MAX_BATCH (64), CONVLAB_BATCH_WAIT_MS (2), CONVLAB_MODEL_THREADS
(4: predictions running at once at most), CONVLAB_STALL_MS (100: a model call running longer lets
the next call start on another thread). SIGTERM stops accepting connections, finishes the requests
in flight, and exits 0.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
from pathlib import Path

log = logging.getLogger("convlab.serve")

CONTAINER_HOST = "0.0.0.0"  # in a container SageMaker reaches the port from outside
LOCAL_HOST = "127.0.0.1"    # `convlab serve` on a laptop: this machine only


def _env(name: str, default, kind=str):
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return kind(value)
    except ValueError:
        raise SystemExit(f"serve: environment variable {name}={value!r} is not a valid {kind.__name__}") from None


BATCH_STRATEGIES = {"SINGLE_RECORD": "SINGLE_RECORD", "SINGLERECORD": "SINGLE_RECORD",
                    "MULTI_RECORD": "MULTI_RECORD", "MULTIRECORD": "MULTI_RECORD"}
LARGEST_PAYLOAD_MB = 100.0  # SageMaker's largest MaxPayloadInMB


def _flag(name: str) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise SystemExit(f"serve: environment variable {name}={value!r}: expected true or false")


def _batch_strategy() -> str:
    value = os.environ.get("SAGEMAKER_BATCH_STRATEGY", "").strip()
    if not value:
        return "MULTI_RECORD"
    strategy = BATCH_STRATEGIES.get(value.upper().replace("-", "_"))
    if strategy is None:
        raise SystemExit(f"serve: environment variable SAGEMAKER_BATCH_STRATEGY={value!r}: expected "
                         "SINGLE_RECORD or MULTI_RECORD")
    return strategy


def _payload_mb(flag: float | None) -> float:
    if flag:
        return flag
    sagemaker = _env("SAGEMAKER_MAX_PAYLOAD_IN_MB", None, float)
    if sagemaker is not None:
        return sagemaker if sagemaker > 0 else LARGEST_PAYLOAD_MB
    return _env("CONVLAB_MAX_PAYLOAD_MB", 6.0, float)


def default_model_dir() -> str:
    return str(Path(os.environ.get("CONVLAB_OPT_ML", "/opt/ml")) / "model")


def parse_args(argv: list[str] | None = None, prog: str = "serve", default_host: str = CONTAINER_HOST):
    from .settings import ServeSettings
    from .backends import BACKENDS

    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default=None, help="model_dir to serve (default: <CONVLAB_OPT_ML or /opt/ml>/model)")
    parser.add_argument("--host", default=default_host,
                        help="address to listen on (default: %(default)s; 127.0.0.1 answers this machine only, "
                             "0.0.0.0 every network interface, as the container's `serve` does)")
    parser.add_argument("--port", type=int, default=None, help="default: SAGEMAKER_BIND_TO_PORT or 8080")
    parser.add_argument("--workers", type=int, default=None, help="default: SAGEMAKER_MODEL_SERVER_WORKERS or 1")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per prediction (default: "
                        "SAGEMAKER_MODEL_SERVER_TIMEOUT or 60)")
    parser.add_argument("--max-payload-mb", type=float, default=None, help="default: SAGEMAKER_MAX_PAYLOAD_IN_MB, "
                        "else CONVLAB_MAX_PAYLOAD_MB, else 6")
    parser.add_argument("--backend", choices=BACKENDS, default=None, help="default: CONVLAB_BACKEND or auto "
                        "(ONNX Runtime when model.onnx exists and onnxruntime imports, else the SavedModel)")
    parser.add_argument("--max-batch", type=int, default=None, help="images per model call (default 64)")
    parser.add_argument("--batch-wait-ms", type=float, default=None,
                        help="longest wait for concurrent requests to join a model call (default 2)")
    parser.add_argument("--access-log", action="store_true", default=None,
                        help="log one line per request (default: CONVLAB_ACCESS_LOG or false; failed requests "
                             "are logged either way)")
    args = parser.parse_args(argv)
    settings = ServeSettings(
        model_dir=str(Path(args.model_dir or default_model_dir()).resolve()),
        host=args.host,
        port=args.port if args.port is not None else _env("SAGEMAKER_BIND_TO_PORT", 8080, int),
        workers=args.workers or _env("SAGEMAKER_MODEL_SERVER_WORKERS", 1, int),
        timeout=args.timeout or _env("SAGEMAKER_MODEL_SERVER_TIMEOUT", 60.0, float),
        max_payload_mb=_payload_mb(args.max_payload_mb),
        max_batch=args.max_batch or _env("CONVLAB_MAX_BATCH", 64, int),
        batch_wait_ms=args.batch_wait_ms if args.batch_wait_ms is not None else _env("CONVLAB_BATCH_WAIT_MS", 2.0, float),
        backend=(args.backend or _env("CONVLAB_BACKEND", "auto")).lower(),
        model_threads=_env("CONVLAB_MODEL_THREADS", 4, int),
        stall_ms=_env("CONVLAB_STALL_MS", 100.0, float),
        access_log=args.access_log or _flag("CONVLAB_ACCESS_LOG"),
        batch=_flag("SAGEMAKER_BATCH"),
        batch_strategy=_batch_strategy(),
        max_concurrent_transforms=_env("SAGEMAKER_MAX_CONCURRENT_TRANSFORMS", None, int) or None,
    )
    problems = [f"{name} must be positive, got {value}" for name, value in
                (("--workers", settings.workers), ("--timeout", settings.timeout),
                 ("--max-payload-mb", settings.max_payload_mb), ("--max-batch", settings.max_batch),
                 ("CONVLAB_MODEL_THREADS", settings.model_threads), ("CONVLAB_STALL_MS", settings.stall_ms))
                if value <= 0]
    if settings.backend not in BACKENDS:
        problems.append(f"backend {settings.backend!r}: expected one of {', '.join(BACKENDS)}")
    if problems:
        parser.error("; ".join(problems))
    return settings


def _stopped_by_signal(signum, frame) -> None:
    log.info("stopped by %s after draining the requests in flight", signal.Signals(signum).name)


def model_dir_problem(model_dir: str) -> str | None:
    """Why `model_dir` cannot be served by convlab's own model_fn, or None. With a code/inference.py
    the user's model_fn may load anything, so only the folder itself is checked."""
    path = Path(model_dir)
    expected = ("expected a model_dir as training writes it: labels.json, config.json and model.onnx "
                "or 1/saved_model.pb (docs/model_dir.md)")
    if not path.is_dir():
        return f"{model_dir}: no such folder (--model-dir, or CONVLAB_OPT_ML/model); {expected}"
    if (path / "code" / "inference.py").is_file():
        return None
    missing = [name for name in ("labels.json", "config.json") if not (path / name).is_file()]
    if not (path / "model.onnx").is_file() and not (path / "1" / "saved_model.pb").is_file():
        missing.append("model.onnx or 1/saved_model.pb")
    if missing:
        inner = next((p for p in (path / "model", path / "opt_ml" / "model") if (p / "labels.json").is_file()), None)
        hint = f"; did you mean {inner}?" if inner else ""
        return f"{model_dir}: not a model_dir ({', '.join(missing)}: not found); {expected}{hint}"
    return None


def check_port(host: str, port: int) -> None:
    """OSError when the port cannot be bound as uvicorn binds it (SO_REUSEADDR): checked before the
    model loads, so a port in use stops the server at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))


def _port_free_or_say_why(settings, prog: str) -> bool:
    try:
        check_port(settings.host, settings.port)
        return True
    except OSError as exc:
        print(f"{prog}: cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc} (is another "
              "server using the port?): stop it, or pass --port N (SAGEMAKER_BIND_TO_PORT in a container)",
              file=sys.stderr)
        return False


def convlab_main(argv: list[str] | None = None) -> int:
    """`convlab serve`: the same server, listening on this machine only unless --host says otherwise."""
    return main(argv, prog="convlab serve", default_host=LOCAL_HOST)


def main(argv: list[str] | None = None, prog: str = "serve", default_host: str = CONTAINER_HOST) -> int:
    settings = parse_args(argv, prog, default_host)
    problem = model_dir_problem(settings.model_dir)
    if problem:
        print(f"{prog}: {problem}", file=sys.stderr)
        return 1
    if not _port_free_or_say_why(settings, prog):
        return 1
    from .app import configure_logging

    configure_logging()
    from .backends import BACKEND_ENV
    from .handler import MODEL_DIR_ENV
    # The handler module reads these, in this process and in worker processes.
    os.environ[MODEL_DIR_ENV] = settings.model_dir
    os.environ[BACKEND_ENV] = settings.backend

    import uvicorn

    from .app import build_app
    from .settings import settings_to_environment
    from .draining import DrainingServer
    from .overrides import UserModuleError, load_handler

    common = dict(host=settings.host, port=settings.port, log_config=None, access_log=False,
                  timeout_graceful_shutdown=max(1, int(settings.timeout)), server_header=False)
    log.info("serving %s on %s:%d (%d worker%s, backend %s, payload limit %g MB%s)", settings.model_dir,
             settings.host, settings.port, settings.workers, "s" if settings.workers > 1 else "",
             settings.backend, settings.max_payload_mb,
             f", batch transform {settings.batch_strategy}" if settings.batch else "")
    try:
        if settings.workers > 1:
            load_handler(settings.model_dir)  # a broken code/inference.py stops here, once, loudly
            settings_to_environment(settings)
            uvicorn.run("inference.app:app_from_environment", factory=True, workers=settings.workers, **common)
            return 0
        failed = []
        server = None

        def stop_on_failure() -> None:
            failed.append(True)
            server.should_exit = True

        app = build_app(settings, stop_on_failure)
        server = DrainingServer(uvicorn.Config(app, **common))
        # uvicorn re-raises the signal that stopped it once it has drained; by then the shutdown
        # is complete, so it lands on these handlers and the process exits 0.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _stopped_by_signal)
        server.run()
        if failed:  # the reason is the last line, after the shutdown's own
            print(f"{prog}: {app.state.serving.failure or 'the model could not be loaded'}", file=sys.stderr)
        return 1 if failed else 0
    except UserModuleError:
        log.exception("cannot start")
        return 1


if __name__ == "__main__":
    sys.exit(main())
