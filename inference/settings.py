"""How `serve` runs (ServeSettings), and how a multi-worker server's workers receive it: through
an environment variable the main process sets before uvicorn spawns them."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

SETTINGS_ENV = "CONVLAB_SERVE_SETTINGS"


@dataclass
class ServeSettings:
    model_dir: str
    host: str = "0.0.0.0"
    port: int = 8080
    workers: int = 1
    timeout: float = 60.0
    max_payload_mb: float = 6.0
    max_batch: int = 64
    batch_wait_ms: float = 2.0
    backend: str = "auto"
    model_threads: int = 4
    stall_ms: float = 100.0
    access_log: bool = False  # one log line per request; failed requests (4xx/5xx) are always logged
    # Set by SageMaker in a batch transform container (SAGEMAKER_BATCH, SAGEMAKER_BATCH_STRATEGY,
    # SAGEMAKER_MAX_CONCURRENT_TRANSFORMS); /execution-parameters reflects them.
    batch: bool = False
    batch_strategy: str = "MULTI_RECORD"
    max_concurrent_transforms: int | None = None

    @property
    def max_payload_bytes(self) -> int:
        return int(self.max_payload_mb * 1024 * 1024)


def settings_to_environment(settings: ServeSettings) -> None:
    os.environ[SETTINGS_ENV] = json.dumps(asdict(settings))


def settings_from_environment() -> ServeSettings:
    return ServeSettings(**json.loads(os.environ[SETTINGS_ENV]))
