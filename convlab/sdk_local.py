"""The SageMaker SDK in a local mode (LOCAL_CONTAINER, the sandbox): nothing sent to AWS, little noise.

The SDK sends a telemetry request to an AWS host (sm-pysdk-t-<region>.s3...amazonaws.com) from every
decorated call, unless its defaults config sets `SageMaker.PythonSDK.Modules.TelemetryOptOut`.
`local_sdk()` writes a config that is the user's own (if any) with that setting added, and points the
SDK at it with SAGEMAKER_USER_CONFIG_OVERRIDE for the duration of the block, together with
COMPOSE_ANSI=never and NO_COLOR=1, and AWS_EC2_METADATA_DISABLED=true (no credential or region lookups
on the instance metadata host). The containers' output, which the SDK copies to stdout as docker
compose prints it, goes through `QuietStream`: without colour codes, the driver's shell trace
(`++ ...` lines) or its dump of every environment variable; the training's own lines pass unchanged.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from pathlib import Path
from typing import Iterator

log = logging.getLogger("convlab.launch")

CONFIG_ENV = "SAGEMAKER_USER_CONFIG_OVERRIDE"
QUIET_ENV = {"COMPOSE_ANSI": "never", "NO_COLOR": "1", "AWS_EC2_METADATA_DISABLED": "true"}
LOCAL_ENVIRONMENT = {"NO_COLOR": "1"}
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
PREFIX = re.compile(r"^([\w.-]+\s*\|\s?)?(.*)$")   # docker compose's "algo-1_1  | " before each line
VARIABLE = re.compile(r"^[A-Z_][A-Z0-9_]*=")


class QuietStream:
    """A text stream that drops colour codes, shell traces and environment dumps, line by line."""

    def __init__(self, target):
        self.target, self._pending, self._in_dump = target, "", False

    def write(self, text: str) -> int:
        self._pending += ANSI.sub("", text)
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            if self._keep(line):
                self.target.write(line + "\n")
        return len(text)

    def _keep(self, line: str) -> bool:
        body = PREFIX.match(line).group(2).strip()
        if body == "Environment Variables:":
            self._in_dump = True
            return False
        if self._in_dump and VARIABLE.match(body):
            return False
        self._in_dump = False
        return not body.startswith("++ ")

    def flush(self) -> None:
        if self._pending:
            self.target.write(self._pending)
            self._pending = ""
        self.target.flush()

    def __getattr__(self, name):
        return getattr(self.target, name)
# Loggers of the SDK that print request dumps and compose files at INFO.
SDK_LOGGERS = ("sagemaker", "sagemaker.core", "sagemaker.train", "sagemaker.config")


def _user_config() -> dict:
    import yaml

    path = os.environ.get(CONFIG_ENV)
    if not path:
        from platformdirs import user_config_dir

        path = os.path.join(user_config_dir("sagemaker"), "config.yaml")
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        document = yaml.safe_load(handle) or {}
    return document if isinstance(document, dict) else {}


def write_opt_out_config(path: Path) -> Path:
    """The user's SDK config with TelemetryOptOut set, written to `path`."""
    import yaml

    document = _user_config()
    document.setdefault("SchemaVersion", "1.0")
    sdk = document.setdefault("SageMaker", {}).setdefault("PythonSDK", {})
    sdk.setdefault("Modules", {})["TelemetryOptOut"] = True
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def quiet_sdk_logging(verbose: bool = False) -> None:
    for name in SDK_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)


@contextlib.contextmanager
def local_sdk(work_dir: Path) -> Iterator[Path]:
    """The SDK opted out of telemetry (and docker compose without colour) inside the block."""
    config = write_opt_out_config(Path(work_dir).resolve() / "sagemaker-config.yaml")
    wanted = {CONFIG_ENV: str(config), **QUIET_ENV}
    saved = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    log.debug("SageMaker SDK telemetry off: %s", config)
    stream = QuietStream(sys.stdout)
    try:
        with contextlib.redirect_stdout(stream):
            yield config
    finally:
        stream.flush()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
