"""A study launched as one SageMaker hyperparameter tuning job (SDK v3 HyperparameterTuner), against the
live moto server: the request as it went over HTTP, and what the account then holds.

moto 5.2.5 stores a tuning job and answers DescribeHyperParameterTuningJob (status Completed at once,
with a canned best training job); it launches no training jobs and has no
ListTrainingJobsForHyperParameterTuningJob, so what is checked here is the request, and the job as
the account describes it, not the jobs the tuning job would start."""
from __future__ import annotations

import pytest

from training.experiments import study_from_dict
from training.experiments.runner import StudyRunError, plan_studies
from training.metrics import METRIC_DEFINITIONS

from .fixtures_experiments import BASELINE_SPEC, KERNEL_SPEC
from .fixtures_sdk import LAB_ROLE, TEST_BUCKET

IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-training:2.16-cpu-py310"


def settings(**changes):
    from training.experiments.sagemaker_runner import SageMakerSettings

    return SageMakerSettings(role=LAB_ROLE, training_image=IMAGE, instance_type="ml.c5.xlarge",
                             output_path=f"s3://{TEST_BUCKET}/tuning", max_parallel=2, **changes)


def test_a_study_launches_one_grid_tuning_job_over_its_factor_and_seeds(sdk_session, wire_requests):
    from training.experiments.tuning import launch_tuning

    sdk_session.boto_session.client("s3").create_bucket(Bucket=TEST_BUCKET)
    study = study_from_dict(KERNEL_SPEC, "kernel.json")
    sent = wire_requests(sdk_session.boto_session, "CreateHyperParameterTuningJob")
    channels = {"train": f"s3://{TEST_BUCKET}/fmnist/train/"}
    name = launch_tuning(study, channels, settings(), session=sdk_session)

    (body,) = sent
    assert body["HyperParameterTuningJobName"] == name and name.startswith("convlab-study-ker")
    config = body["HyperParameterTuningJobConfig"]
    assert config["Strategy"] == "Grid"
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": "validation:accuracy"}
    assert config["ResourceLimits"]["MaxParallelTrainingJobs"] == 2
    ranges = {r["Name"]: r["Values"] for r in config["ParameterRanges"]["CategoricalParameterRanges"]}
    assert ranges == {"kernel_size": ["3", "5"], "seed": ["0", "1"]}
    assert not config["ParameterRanges"].get("IntegerParameterRanges")

    definition = body["TrainingJobDefinition"]
    spec = definition["AlgorithmSpecification"]
    assert spec["TrainingImage"] == IMAGE
    assert spec["MetricDefinitions"] == METRIC_DEFINITIONS  # the regexes of the entry point's log lines
    static = definition["StaticHyperParameters"]
    assert "kernel_size" not in static and "seed" not in static
    # Every grid point is one planned run of the study: the static values plus (kernel_size, seed).
    for run in plan_studies([study]).runs:
        grid_point = {**static, "kernel_size": run.hyperparameters["kernel_size"], "seed": run.hyperparameters["seed"]}
        assert {k: grid_point[k] for k in run.hyperparameters} == run.hyperparameters
    assert static["sagemaker_program"] == "train.py"
    source = static["sagemaker_submit_directory"].strip('"')
    bucket, key = source[len("s3://"):].split("/", 1)
    assert sdk_session.boto_session.client("s3").head_object(Bucket=bucket, Key=key)["ContentLength"] > 1000
    channels_sent = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
                     for c in definition["InputDataConfig"]}
    assert channels_sent["train"] == channels["train"]
    assert definition["RoleArn"] == LAB_ROLE and definition["ResourceConfig"]["InstanceType"] == "ml.c5.xlarge"
    assert definition["OutputDataConfig"]["S3OutputPath"] == f"s3://{TEST_BUCKET}/tuning"

    described = sdk_session.boto_session.client("sagemaker").describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=name)
    assert described["HyperParameterTuningJobConfig"]["Strategy"] == "Grid"
    assert described["TrainingJobDefinition"]["StaticHyperParameters"] == static


def test_the_entry_point_accepts_the_hyperparameters_a_tuning_job_passes():
    """What a grid point's training job receives: the static values, one value of each range, and the
    SDK's sagemaker_* entries, which the entry point ignores."""
    from training.experiments.tuning import grid_ranges
    from training.hyperparameters import parse_hyperparameters

    study = study_from_dict(KERNEL_SPEC, "kernel.json")
    ranges = grid_ranges(study)
    run = plan_studies([study]).runs[-1]
    passed = {**run.hyperparameters, "sagemaker_program": '"train.py"',
              "_tuning_objective_metric": "validation:accuracy",
              "kernel_size": ranges["kernel_size"][-1], "seed": ranges["seed"][-1]}
    params, config = parse_hyperparameters(passed)
    assert config.to_hyperparameters()["kernel_size"] == "5" and params.seed == 1


def test_a_study_whose_settings_adjust_other_keys_is_refused_as_a_tuning_job():
    from training.experiments.tuning import grid_ranges

    spec = dict(KERNEL_SPEC, adjustments={"pooling": "needed with a larger kernel"},
                settings=[{"label": "3x3", "kernel_size": 3}, {"label": "7x7", "kernel_size": 7, "pooling": "none"}])
    with pytest.raises(StudyRunError, match=r"setting '7x7' also sets \['pooling'\].*run_study --sagemaker"):
        grid_ranges(study_from_dict(spec, "kernel.json"))
    assert grid_ranges(study_from_dict(BASELINE_SPEC, "baseline.json")) == {"model": ["mlp", "cnn"], "seed": ["0", "1"]}


def test_a_tuning_job_needs_s3_channels_and_a_validation_objective(sdk_session, tmp_path):
    from training.experiments.tuning import launch_tuning

    study = study_from_dict(KERNEL_SPEC, "kernel.json")
    with pytest.raises(StudyRunError, match="needs S3 channels"):
        launch_tuning(study, {"train": str(tmp_path)}, settings(), session=sdk_session)
    with pytest.raises(StudyRunError, match="objective 'test:accuracy'"):
        launch_tuning(study, {"train": f"s3://{TEST_BUCKET}/x/"}, settings(), session=sdk_session,
                      objective="test:accuracy")
