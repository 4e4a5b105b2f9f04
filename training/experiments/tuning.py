"""A study as one SageMaker hyperparameter tuning job (SDK v3 `sagemaker.train.tuner.HyperparameterTuner`).

A one-factor study is a grid: its factor takes each setting's value and `seed` each seed, everything
else stays at the study's base. Grid search over those two categorical ranges therefore launches one
training job per (setting, seed), as `run_sagemaker` does, and SageMaker picks the best by the
objective metric, which it reads from the entry point's `convlab-metrics` lines through the same
metric definitions (`validation:accuracy` by default: choose on validation, never on test).
Settings that also adjust other keys (a study's "adjustments") cannot be expressed as a grid over
the factor alone, and are refused.
"""
from __future__ import annotations

import logging
from pathlib import Path

from .runner import PlannedRun, StudyRunError, plan_studies
from .sagemaker_runner import SageMakerSettings, _trainer
from .spec import Study

log = logging.getLogger(__name__)

OBJECTIVES = ("validation:accuracy", "validation:loss")
TUNING_NAME_LENGTH = 32 - 15  # the SDK appends "-YYMMDDHHMM-xxxx"-style suffixes to stay within 32


def grid_ranges(study: Study) -> dict[str, list[str]]:
    """The categorical ranges of the study's grid: its factor's values and its seeds, as strings."""
    for setting in study.settings:
        extra = sorted(set(setting.overrides) - {study.factor})
        if extra:
            raise StudyRunError(f"study '{study.name}': setting '{setting.label}' also sets {extra}; a tuning "
                                "job varies each hyperparameter on its own, so it cannot pair them: run this "
                                "study as separate jobs (run_study --sagemaker)")
    plan = plan_studies([study])
    values = list(dict.fromkeys(run.hyperparameters[study.factor] for run in plan.runs))
    seeds = list(dict.fromkeys(run.hyperparameters["seed"] for run in plan.runs))
    return {study.factor: values, "seed": seeds}


def build_tuner(study: Study, settings: SageMakerSettings, source_dir: Path, session=None,
                objective: str = "validation:accuracy"):
    """A Grid-search HyperparameterTuner over the study's factor and seeds, with convlab's metrics."""
    from sagemaker.core.parameter import CategoricalParameter
    from sagemaker.train.tuner import HyperparameterTuner

    from ..metrics import METRIC_DEFINITIONS

    if objective not in OBJECTIVES:
        raise StudyRunError(f"objective {objective!r}: expected one of {OBJECTIVES} (choose on validation data)")
    ranges = grid_ranges(study)
    # Every run of a one-factor study has the same hyperparameters but the factor and the seed.
    static = {k: v for k, v in plan_studies([study]).runs[0].hyperparameters.items() if k not in ranges}
    trainer = _trainer(PlannedRun(study.name, static), settings, source_dir, session)
    return HyperparameterTuner(
        model_trainer=trainer, objective_metric_name=objective,
        objective_type="Maximize" if objective.endswith("accuracy") else "Minimize",
        hyperparameter_ranges={name: CategoricalParameter(values) for name, values in ranges.items()},
        metric_definitions=[dict(d) for d in METRIC_DEFINITIONS], strategy="Grid",
        max_parallel_jobs=settings.max_parallel,
        base_tuning_job_name=f"{settings.base_job_name}-{study.name}"[:TUNING_NAME_LENGTH].rstrip("-_"),
    )


def launch_tuning(study: Study, channels: dict[str, str], settings: SageMakerSettings, session=None,
                  objective: str = "validation:accuracy") -> str:
    """Start the study's tuning job (without waiting) and return its name."""
    import tempfile

    from sagemaker.core.training.configs import InputData

    from ..local import stage_source_dir

    bad = {name: uri for name, uri in channels.items() if not str(uri).startswith("s3://")}
    if bad:
        raise StudyRunError(f"a tuning job needs S3 channels (s3://bucket/prefix); got {bad}")
    with tempfile.TemporaryDirectory(prefix="convlab-source-") as staging:
        tuner = build_tuner(study, settings, stage_source_dir(Path(staging) / "source"), session, objective)
        inputs = [InputData(channel_name=name, data_source=uri) for name, uri in sorted(channels.items())]
        tuner.tune(inputs=inputs, wait=False)
    name = tuner.latest_tuning_job.hyper_parameter_tuning_job_name
    log.info("tuning job %s: Grid over %s, objective %s", name, grid_ranges(study), objective)
    return name
