"""The SageMaker SDK in a local mode (LOCAL_CONTAINER, the sandbox): nothing sent to AWS, little noise.

The SDK sends a telemetry request to an AWS host (sm-pysdk-t-<region>.s3...amazonaws.com) from every
decorated call, unless its defaults config sets `SageMaker.PythonSDK.Modules.TelemetryOptOut`.
`local_sdk()` writes a config that is the user's own (if any) with that setting added, and points the
SDK at it with SAGEMAKER_USER_CONFIG_OVERRIDE for the duration of the block, together with
COMPOSE_ANSI=never and NO_COLOR=1 for docker compose's output, and AWS_EC2_METADATA_DISABLED=true (no
credential or region lookups on the instance metadata host). `LOCAL_ENVIRONMENT` goes into the
training containers: the SDK's driver then logs warnings only, not its dump of every variable.
"""
from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Iterator

log = logging.getLogger("convlab.launch")

CONFIG_ENV = "SAGEMAKER_USER_CONFIG_OVERRIDE"
QUIET_ENV = {"COMPOSE_ANSI": "never", "NO_COLOR": "1", "AWS_EC2_METADATA_DISABLED": "true"}
LOCAL_ENVIRONMENT = {"SM_LOG_LEVEL": str(logging.WARNING), "NO_COLOR": "1"}
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
    try:
        yield config
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
