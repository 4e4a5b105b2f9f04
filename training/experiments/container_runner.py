"""Run a study as SageMaker training jobs on this machine: SDK v3 ModelTrainer in LOCAL_CONTAINER mode,
one job per (config, seed), each in its own container of a training image (convlab's own image,
`scripts/docker_build.sh`, by default), with local folders as channels.

Every job trains through the same staged source dir and entry point as a job on AWS, and its record is
read from the `model.tar.gz` the SDK packed from the container's /opt/ml/model, as `run_sagemaker`
reads a job's archive from S3. Jobs run one after another: the SDK's compose files put every local
job on one network, `sagemaker-local`, which each job's docker-compose creates and removes, so jobs
started together fail on it ("network with name sagemaker-local already exists"). On SageMaker the
same runs go in parallel (`run_sagemaker`). A rerun skips runs already recorded.
"""
from __future__ import annotations

import logging
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from convlab.archives import UnsafeMember, read_json_member, safe_extract
from convlab.container_failure import clear_previous_run, compose_down, describe_failure, host_failures

from .records import load_records, make_record, record_path, write_json_atomic
from .runner import StudyRunError, best_run_ids, pending_runs, plan_studies, prepare_runs_folder
from .spec import Study

log = logging.getLogger(__name__)

BACKEND = "local_container"


@dataclass
class LocalContainerSettings:
    training_image: str = "convlab:latest"    # scripts/docker_build.sh builds it
    base_job_name: str = "convlab-study"


def _trainer(run, settings: LocalContainerSettings, source_dir: Path, container_root: Path):
    from sagemaker.core.training.configs import Compute, MetricDefinition, SourceCode
    from sagemaker.train import ModelTrainer
    from sagemaker.train.model_trainer import Mode

    from ..local import ENTRY_SCRIPT
    from ..metrics import METRIC_DEFINITIONS

    trainer = ModelTrainer(
        training_mode=Mode.LOCAL_CONTAINER, training_image=settings.training_image,
        base_job_name=f"{settings.base_job_name}-{run.run_id}"[:48].rstrip("-"),
        source_code=SourceCode(source_dir=str(source_dir), entry_script=ENTRY_SCRIPT, requirements="requirements.txt"),
        compute=Compute(instance_type="local", instance_count=1),
        hyperparameters={k: str(v) for k, v in run.hyperparameters.items()},
        local_container_root=str(container_root),
    )
    return trainer.with_metric_definitions(
        [MetricDefinition(name=d["Name"], regex=d["Regex"]) for d in METRIC_DEFINITIONS])


def train_one(run, channels: dict[str, str], settings: LocalContainerSettings, source_dir: Path,
              container_root: Path) -> Path:
    """Run one job in a local container and return its model.tar.gz; StudyRunError naming the run
    and the container's own failure reason if it failed."""
    from sagemaker.core.training.configs import InputData

    clear_previous_run(container_root)
    trainer = _trainer(run, settings, source_dir, container_root)
    inputs = [InputData(channel_name=name, data_source=path) for name, path in sorted(channels.items())]
    try:
        trainer.train(input_data_config=inputs, wait=True, logs=False)
    except RuntimeError as exc:  # docker-compose ended non-zero: the container failed
        reason = describe_failure(container_root, exc)
        compose_down(container_root)
        raise StudyRunError(f"{run.describe()}: {reason}") from None
    compose_down(container_root)
    if host_failures(container_root):
        raise StudyRunError(f"{run.describe()}: {describe_failure(container_root)}")
    archive = container_root / "compressed_artifacts" / "model.tar.gz"
    if not archive.is_file():
        raise StudyRunError(f"{run.describe()}: the job ended without {archive}")
    return archive


def record_job(runs: Path, run, archive: Path) -> dict:
    """The run's record, from the metrics.json inside the job's model.tar.gz."""
    with open(archive, "rb") as stream:
        metrics = read_json_member(stream, "metrics.json")
    if metrics is None:
        raise StudyRunError(f"{archive}: no metrics.json at the top of the archive")
    record = make_record(run.run_id, run.hyperparameters, metrics, BACKEND, job_name=archive.parent.parent.name,
                         model_artifact=archive.resolve().as_uri())
    write_json_atomic(record_path(runs, run.run_id), record)
    log.info("recorded %s from its local container job: test accuracy %.4f", run.run_id, metrics["test_accuracy"])
    return record


def run_local_container(studies: list[Study], channels: dict[str, str], runs: str | Path,
                        settings: LocalContainerSettings | None = None) -> dict:
    """Train every missing run as a LOCAL_CONTAINER training job and record each job's metrics."""
    from ..local import stage_source_dir

    settings = settings or LocalContainerSettings()
    missing = {name: path for name, path in channels.items() if "://" in str(path) or not Path(path).is_dir()}
    if missing:
        raise StudyRunError(f"local containers read local channel folders; these are not folders here: {missing}")
    runs = Path(runs)
    plan = plan_studies(studies)
    prepare_runs_folder(runs, channels, plan)
    todo, done = pending_runs(runs, plan)
    channels = {name: str(Path(path).resolve()) for name, path in channels.items()}
    log.info("%d runs: %d recorded, %d to train in local containers", len(plan.runs), len(done), len(todo))
    failures = []
    with tempfile.TemporaryDirectory(prefix="convlab-source-") as staging:
        source_dir = stage_source_dir(Path(staging) / "source")
        for run in todo:
            # The compose project is named after the folder: one folder per run keeps jobs apart.
            root = (runs / "containers" / run.run_id).resolve()
            root.mkdir(parents=True, exist_ok=True)
            try:
                record_job(runs, run, train_one(run, channels, settings, source_dir, root))
            except StudyRunError as exc:
                failures.append(str(exc))
    extract_best_models(runs)
    if failures:
        raise StudyRunError(f"{len(failures)} job(s) failed (a rerun trains them again):\n" + "\n".join(failures))
    return {"planned": len(plan.runs), "trained": [r.run_id for r in todo], "skipped": [r.run_id for r in done]}


def extract_best_models(runs: Path) -> list[str]:
    """The model of each study's best run, extracted from its job's archive, for the report's figures."""
    records = load_records(runs)
    extracted = []
    for rid in sorted(set(best_run_ids(runs).values())):
        artifact = records[rid].get("model_artifact", "")
        target = runs / "models" / rid
        if not artifact.startswith("file://") or (target / "model.keras").is_file():
            continue
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        with tarfile.open(Path(artifact[len("file://"):]), "r:gz") as tar:
            try:
                safe_extract(tar, target, artifact)
            except UnsafeMember as exc:
                raise StudyRunError(str(exc)) from None
        extracted.append(rid)
    return extracted
