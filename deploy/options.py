"""What a deploy run is asked to do (DeployOptions), and the check that runs before it creates anything."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy import aws
from deploy.errors import DeployError
from deploy.register import DEFAULT_INSTANCE_TYPE

ENDPOINT_TIMEOUT_S = 1800.0     # SageMaker endpoints usually take 5-10 minutes
TRANSFORM_TIMEOUT_S = 3600.0
POLL_S = 30.0

STEPS = ("endpoint", "transform", "local")


@dataclass
class DeployOptions:
    name: str                               # run name: resource names derive from it
    artifacts: aws.S3Uri                    # receives model.tar.gz, metrics.json, inputs/, predictions/
    role_arn: str
    model_dir: Path | None = None
    archive: Path | None = None
    image_uri: str | None = None
    input: str | None = None                # s3:// prefix or local folder of images
    output: aws.S3Uri | None = None         # default <artifacts>/predictions/
    model_name: str | None = None
    package_group: str | None = None        # Model Registry group; None skips registration
    approval: str = "PendingManualApproval"
    instance_type: str = DEFAULT_INSTANCE_TYPE
    endpoint_timeout_s: float = ENDPOINT_TIMEOUT_S
    transform_timeout_s: float = TRANSFORM_TIMEOUT_S
    poll_s: float = POLL_S
    steps: tuple[str, ...] = STEPS
    create_bucket: bool = False
    work_dir: Path = Path("work/deploy")
    region: str | None = None
    batch_size: int = 64
    workers: int = 8
    progress: bool = True
    result_path: Path | None = None
    sandbox: bool = False                   # recorded in the result's location
    # Where the run's clients call: None is boto3's own configuration (AWS, or AWS_ENDPOINT_URL);
    # a sandbox passes its URL and the dummy credentials it accepts.
    endpoint_url: str | None = None
    credentials: dict[str, str] | None = None

    def __post_init__(self) -> None:
        aws.check_name(self.name, "run name")
        unknown = [s for s in self.steps if s not in STEPS]
        if unknown or not self.steps:
            raise DeployError(f"steps {unknown or list(self.steps)} not understood: expected some of {STEPS}")
        if not (self.model_dir or self.archive):
            raise DeployError("deploy needs --model-dir (a training model_dir) or --archive (a model.tar.gz)")

    def client(self, service: str, max_pool: int = 10) -> Any:
        """A boto3 client for this run, at `endpoint_url` with `credentials` when they are set."""
        return aws.client(service, self.region, max_pool, self.endpoint_url, self.credentials)

    def check(self) -> None:
        """Every argument the chosen steps need, checked before anything is created."""
        if self.model_dir and not Path(self.model_dir).is_dir():
            raise DeployError(f"--model-dir {self.model_dir}: no such folder (expected a training model_dir)")
        if self.archive and not Path(self.archive).is_file():
            raise DeployError(f"--archive {self.archive}: no such file (expected a model.tar.gz)")
        needing = [s for s in self.steps if s in ("transform", "local")]
        if needing and not self.input:
            raise DeployError(f"steps {','.join(needing)} need --input (an s3:// prefix or a folder of images): "
                              "pass --input, or --steps endpoint")
        if self.input and aws.is_s3(self.input):
            aws.S3Uri.parse(self.input, "--input")
        elif self.input and not Path(self.input).is_dir():
            raise DeployError(f"--input {self.input!r} is neither an s3:// prefix nor a folder of images")
        for flag, value in (("--endpoint-timeout", self.endpoint_timeout_s),
                            ("--transform-timeout", self.transform_timeout_s), ("--poll", self.poll_s)):
            if not value > 0:
                raise DeployError(f"{flag} {value}: expected a number of seconds above 0")
