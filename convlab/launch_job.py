"""A SageMaker training job for `convlab launch`: its settings (LaunchConfig), the checks and the
data upload before it, ModelTrainer's request, and waiting for the job and reading its metrics.

convlab/launch.py is the command line over it; `convlab.launch` re-exports what is here.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from convlab.container_failure import clear_previous_run, compose_down, describe_failure, host_failures
from convlab.launch_checks import check_docker, read_as_the_job_will
from convlab.s3data import CHANNELS, MetricsUnavailable, fetch_metrics, planned_upload, s3_channels, upload_dataset
from convlab.sagemaker_setup import (LaunchError, bucket_name, check_instance_type, created_job_name, is_offline,
                                     offline_role, resolve_role, resolve_training_image, role_checks_off,
                                     sagemaker_session, training_job)
from convlab.sdk_local import LOCAL_ENVIRONMENT, local_sdk
from training.data import find_fashion_mnist
from training.local import ENTRY_SCRIPT, stage_source_dir
from training.metrics import METRIC_DEFINITIONS

log = logging.getLogger("convlab.launch")

LOCAL_IMAGE = "convlab:latest"  # scripts/docker_build.sh builds it from the Dockerfile


@dataclass
class LaunchConfig:
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    base_job_name: str | None = None        # default: convlab-<model>
    data: str | None = None                 # local folder or s3:// prefix; None: Fashion-MNIST
    channels: dict[str, str] | None = None  # already uploaded channels (upload_dataset)
    bucket: str | None = None               # default: sagemaker-<region>-<account>
    prefix: str | None = None               # default: convlab/data/<folder>-<content digest>
    role: str | None = None
    region: str | None = None
    image_uri: str | None = None
    framework_version: str | None = None
    instance_type: str = "ml.m5.xlarge"
    instance_count: int = 1
    volume_gb: int = 30
    spot: bool = True
    max_run_s: int = 3600
    max_wait_s: int = 7200
    checkpoint_uri: str | None = None       # default: per job, chosen by the SDK
    output_path: str | None = None          # default: s3://BUCKET/convlab/output/
    local_container: bool = False
    dry_run: bool = False                   # everything up to, not including, creating the job
    work_dir: Path = Path("work/launch")
    progress: bool = True


@dataclass
class Submission:
    trainer: Any
    job_name: str
    mode: str
    image_uri: str
    image_source: str
    channels: dict[str, str]
    hyperparameters: dict[str, str]
    work_dir: Path
    dry_run: bool = False
    upload: dict[str, Any] | None = None   # a dry run's account of the data upload it did not do
    created: bool = False                  # a SageMaker training job named job_name was created

    def as_dict(self) -> dict[str, Any]:
        document = {"job_name": self.job_name, "mode": self.mode, "dry_run": self.dry_run,
                    "image_uri": self.image_uri, "image_source": self.image_source, "channels": self.channels,
                    "hyperparameters": self.hyperparameters}
        if self.upload is not None:
            document["upload"] = self.upload
        return document


@dataclass
class LaunchResult:
    job_name: str
    status: str
    mode: str
    image_uri: str
    image_source: str
    channels: dict[str, str]
    hyperparameters: dict[str, str]
    model_uri: str
    output_uri: str | None = None
    checkpoint_uri: str | None = None
    metrics: dict[str, Any] | None = None
    metrics_note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def job_hyperparameters(raw: dict[str, Any]) -> dict[str, str]:
    """The model config plus the training parameters given, as strings; checked before launching."""
    from training.hyperparameters import parse_hyperparameters
    from training.models.config import ConfigError

    try:
        params, config = parse_hyperparameters(raw)
        try:
            config.validate()
        except ConfigError as exc:
            if not str(exc).startswith("layer "):
                raise  # feature-map sizes depend on the data's image size: the job checks those
    except ConfigError as exc:
        raise LaunchError(str(exc)) from None
    given = {str(k).replace("-", "_") for k in raw}
    chosen = {k: v for k, v in params.to_dict().items() if k in given}
    return {**config.to_hyperparameters(),
            **{k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in chosen.items()}}


# -- the job -------------------------------------------------------------------------------------
def build_trainer(cfg: LaunchConfig, session: Any, role: str | None, image_uri: str,
                  hyperparameters: dict[str, str]) -> Any:
    from sagemaker.core.training.configs import (CheckpointConfig, Compute, MetricDefinition,
                                                 OutputDataConfig, SourceCode, StoppingCondition)
    from sagemaker.train import ModelTrainer
    from sagemaker.train.model_trainer import Mode

    local, spot = cfg.local_container, cfg.spot and not cfg.local_container
    source = stage_source_dir(cfg.work_dir / "source")
    container_root = (cfg.work_dir / "container").resolve()
    if local:
        container_root.mkdir(parents=True, exist_ok=True)
    output = cfg.output_path or (None if local else f"s3://{bucket_name(session)}/convlab/output/")
    trainer = ModelTrainer(
        training_mode=Mode.LOCAL_CONTAINER if local else Mode.SAGEMAKER_TRAINING_JOB,
        sagemaker_session=session, role=role, base_job_name=cfg.base_job_name,
        training_image=image_uri, hyperparameters=hyperparameters,
        source_code=SourceCode(source_dir=str(source), entry_script=ENTRY_SCRIPT, requirements="requirements.txt"),
        compute=Compute(instance_type="local" if local else cfg.instance_type, instance_count=cfg.instance_count,
                        volume_size_in_gb=cfg.volume_gb, enable_managed_spot_training=spot or None),
        stopping_condition=StoppingCondition(max_runtime_in_seconds=cfg.max_run_s,
                                             max_wait_time_in_seconds=cfg.max_wait_s if spot else None),
        output_data_config=OutputDataConfig(s3_output_path=output, compression_type="GZIP") if output else None,
        checkpoint_config=CheckpointConfig(s3_uri=cfg.checkpoint_uri) if spot else None,
        local_container_root=str(container_root), environment=dict(LOCAL_ENVIRONMENT) if local else {},
    )
    return trainer.with_metric_definitions(
        [MetricDefinition(name=d["Name"], regex=d["Regex"]) for d in METRIC_DEFINITIONS])


def _checked(cfg: LaunchConfig) -> tuple[LaunchConfig, dict[str, str]]:
    """The config with its base job name filled in, and the job's hyperparameters; LaunchError if unusable."""
    hyperparameters = job_hyperparameters(cfg.hyperparameters)
    cfg = replace(cfg, base_job_name=cfg.base_job_name or f"convlab-{hyperparameters['model']}")
    if cfg.spot and not cfg.local_container and cfg.max_wait_s < cfg.max_run_s:
        raise LaunchError(f"--max-wait {cfg.max_wait_s} is below --max-run {cfg.max_run_s}: managed spot "
                          "training needs max wait >= max run")
    if not cfg.local_container:
        check_instance_type(cfg.instance_type)
    if cfg.instance_count > 1:
        log.info("%d instances: the entry point trains with MultiWorkerMirroredStrategy across SM_HOSTS",
                 cfg.instance_count)
    return cfg, hyperparameters


def _local_channels(cfg: LaunchConfig) -> dict[str, str]:
    """A local container reads local folders: train/ and test/ of the data, or the data as train."""
    if not cfg.dry_run:
        check_docker()
    data = Path(cfg.data) if cfg.data else find_fashion_mnist()
    if data is None or not data.exists():
        raise LaunchError(f"--local-container reads local data: {cfg.data or 'Fashion-MNIST'} is not here")
    read_as_the_job_will(data)
    return {c: str((data / c).resolve()) for c in CHANNELS if (data / c).is_dir()} or \
        {"train": str(data.resolve())}


def _s3_channels(cfg: LaunchConfig, session: Any) -> tuple[dict[str, str], dict[str, Any] | None]:
    """The job's S3 channels (uploading the data unless it is there), and a dry run's upload plan."""
    s3 = session.boto_session.client("s3")
    if cfg.channels:
        return dict(cfg.channels), None
    if cfg.data and cfg.data.startswith("s3://"):
        return s3_channels(s3, cfg.data), None
    if not cfg.dry_run:
        read_as_the_job_will(Path(cfg.data) if cfg.data else find_fashion_mnist())
        return upload_dataset(s3, cfg.data, session.default_bucket(), cfg.prefix, cfg.progress), None
    # plan only: Session.default_bucket() would create the bucket
    upload = planned_upload(s3, cfg.data, bucket_name(session), cfg.prefix)
    return {c: info["uri"] for c, info in upload["channels"].items()}, upload


def _create_job(trainer: Any, cfg: LaunchConfig, channels: dict[str, str]) -> str | None:
    """trainer.train with the channels; the created job's name (None: a local container ran it)."""
    from botocore.exceptions import ClientError
    from sagemaker.core.training.configs import InputData

    inputs = [InputData(channel_name=name, data_source=uri) for name, uri in channels.items()]
    container_root = cfg.work_dir.resolve() / "container"
    if cfg.local_container and not cfg.dry_run:
        clear_previous_run(container_root)
    try:
        trainer.train(input_data_config=inputs, wait=cfg.local_container, logs=False, dry_run=cfg.dry_run)
        if cfg.local_container and not cfg.dry_run:
            compose_down(container_root)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise LaunchError(f"CreateTrainingJob refused: {error.get('Code')}: {error.get('Message')}") from None
    except RuntimeError as exc:  # docker-compose ended non-zero: a container failed
        if not cfg.local_container:
            raise
        compose_down(container_root)
        raise LaunchError(describe_failure(container_root, exc, cfg.instance_count)) from None
    if cfg.local_container and not cfg.dry_run and host_failures(container_root, cfg.instance_count):
        raise LaunchError(describe_failure(container_root, instance_count=cfg.instance_count))
    return created_job_name(trainer)


def submit(cfg: LaunchConfig, session: Any = None) -> Submission:
    """Check everything, upload the data, and create the training job (a local container runs now).

    With cfg.dry_run nothing is written to AWS: the hyperparameters, role, image, data and the
    ModelTrainer request are checked, and the upload is only planned (what would go, what is there).
    A local container runs with the SDK's telemetry off (convlab.sdk_local)."""
    if not cfg.local_container:
        return _submit(cfg, session)
    with local_sdk(cfg.work_dir):
        return _submit(cfg, session)


def _submit(cfg: LaunchConfig, session: Any = None) -> Submission:
    cfg, hyperparameters = _checked(cfg)
    upload = None
    if cfg.local_container:
        channels = _local_channels(cfg)
        image, source, role = cfg.image_uri or LOCAL_IMAGE, "local image", None
    else:
        session = session or sagemaker_session(cfg.region, cfg.bucket, offline_ok=cfg.dry_run)
        role = offline_role(cfg.role) if cfg.dry_run and is_offline(session) else resolve_role(cfg.role, session)
        image, source = resolve_training_image(cfg.image_uri, session.boto_region_name, cfg.instance_type,
                                               cfg.framework_version)
        channels, upload = _s3_channels(cfg, session)
    with role_checks_off(cfg.dry_run and not cfg.local_container and is_offline(session)):
        trainer = build_trainer(cfg, session, role, image, hyperparameters)
    mode = "local_container" if cfg.local_container else "sagemaker"
    if cfg.dry_run and not cfg.local_container:
        # ModelTrainer's own dry run uploads the source dir: the request is checked up to there.
        name = f"{cfg.base_job_name} (dry run)"
        log.info("dry run: %s on %d x %s checked; nothing was created or uploaded", name, cfg.instance_count,
                 cfg.instance_type)
        return Submission(trainer, name, mode, image, source, channels, hyperparameters,
                          Path(cfg.work_dir), True, upload)
    job_name = _create_job(trainer, cfg, channels)
    name = job_name or f"{cfg.base_job_name} ({'dry run' if cfg.dry_run else 'local container'})"
    log.info("training job %s: %s on %d x %s", name, image, cfg.instance_count, cfg.instance_type)
    return Submission(trainer, name, mode, image, source, channels, hyperparameters, Path(cfg.work_dir),
                      cfg.dry_run, created=job_name is not None)


def finish(sub: Submission, logs: bool = False, poll_s: int = 30) -> LaunchResult:
    """Wait for the job, then read its metrics.json; a failed job is a LaunchError with its reason."""
    from sagemaker.core.utils.exceptions import FailedStatusError

    if not sub.created:  # local container: finished inside submit
        root = sub.work_dir.resolve() / "container" / "compressed_artifacts"
        result = LaunchResult(sub.job_name, "Completed", sub.mode, sub.image_uri, sub.image_source,
                              sub.channels, sub.hyperparameters, f"file://{root / 'model.tar.gz'}")
        s3 = None
    else:
        job = training_job(sub.job_name, sub.trainer.sagemaker_session.boto_session)
        try:
            job.wait(poll=poll_s, logs=logs)
        except FailedStatusError as exc:
            raise LaunchError(f"training job {sub.job_name} failed: {job.failure_reason or exc}") from None
        if job.training_job_status != "Completed":
            raise LaunchError(f"training job {sub.job_name} ended {job.training_job_status}: "
                              f"{job.failure_reason or 'stopped before it completed'}")
        checkpoint = getattr(job.checkpoint_config, "s3_uri", None)
        model_uri = job.model_artifacts.s3_model_artifacts
        result = LaunchResult(sub.job_name, "Completed", sub.mode, sub.image_uri,
                              sub.image_source, sub.channels, sub.hyperparameters, model_uri,
                              model_uri.rsplit("/", 1)[0] + "/output.tar.gz",
                              checkpoint if isinstance(checkpoint, str) else None)
        s3 = sub.trainer.sagemaker_session.boto_session.client("s3")
    try:
        result.metrics = fetch_metrics(s3, result.model_uri, sub.work_dir / "jobs" / sub.job_name)
    except MetricsUnavailable as exc:
        result.metrics_note = str(exc)
        log.warning("training job %s: %s", sub.job_name, exc)
    return result


def launch(cfg: LaunchConfig, session: Any = None, logs: bool = False,
           wait: bool = True) -> LaunchResult | Submission:
    """submit, then (unless wait is False or it is a dry run) finish."""
    submission = submit(cfg, session)
    return finish(submission, logs=logs) if wait and not cfg.dry_run else submission
