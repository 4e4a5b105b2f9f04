"""Controlled experiments: one-factor study specs, and a real 2 settings x 2 seeds study trained through
the entry point, recorded, resumed and pruned."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from training.experiments import StudyError, builtin_names, load_study, resolve_study, study_from_dict
from training.experiments.records import RECORD_FIELDS, canonical_hyperparameters, read_record, run_id
from training.experiments.runner import best_run_ids, plan_studies, run_local

from . import conftest

if "tests.fixtures_experiments" not in conftest.pytest_plugins:
    from .fixtures_experiments import study_runs  # noqa: F401

REPO = Path(__file__).resolve().parent.parent


# --- specs ----------------------------------------------------------------------------------------

def test_a_spec_varying_two_factors_is_refused_naming_both():
    spec = {"name": "two", "factor": "kernel_size",
            "settings": [{"kernel_size": 3, "filters": 16}, {"kernel_size": 5, "filters": 32}]}
    with pytest.raises(StudyError, match=r"two\.json: study 'two' varies 2 factors: 'kernel_size', 'filters'"):
        study_from_dict(spec, "two.json")


def test_a_declared_adjustment_is_the_only_way_a_second_key_changes():
    settings = [{"stride": 1, "pooling": "max"}, {"stride": 2, "pooling": "none"}]
    with pytest.raises(StudyError, match="varies 2 factors: 'stride', 'pooling'"):
        study_from_dict({"name": "s", "factor": "stride", "settings": settings}, "s.json")
    study = study_from_dict({"name": "s", "factor": "stride", "settings": settings,
                             "adjustments": {"pooling": "stride 2 replaces the pooling"}}, "s.json")
    assert [s.overrides["pooling"] for s in study.settings] == ["max", "none"]


@pytest.mark.parametrize("spec, message", [
    ({"name": "k", "factor": "kernel_size", "settings": [{"kernel_size": 3}]}, "at least 2 settings"),
    ({"name": "k", "factor": "kernel_size", "settings": [{"kernel_size": 3}, {"filters": 8}]},
     "setting 'kernel_size=None' does not set the factor 'kernel_size'"),
    ({"name": "k", "factor": "kernel_size", "settings": [{"kernel_size": 3}, {"kernel_size": 3}]}, "same value"),
    ({"name": "k", "factor": "kernel_size", "settings": [{"kernel_size": 3}, {"kernel_size": "wide"}]},
     "setting 'kernel_size=wide': hyperparameter 'kernel_size': expected an integer, got 'wide'"),
    ({"name": "k", "factor": "kernel_sise", "settings": [{"kernel_sise": 3}, {"kernel_sise": 5}]},
     "unknown hyperparameter 'kernel_sise'"),
    ({"name": "k", "factor": "depth", "base_overrides": {"padding": "valid", "kernel_size": 7},
      "settings": [{"depth": 2}, {"depth": 3}]}, "setting 'depth=3': layer block3_conv1"),
    ({"name": "k", "factor": "depth", "seeds": 0, "settings": [{"depth": 1}, {"depth": 2}]}, "'seeds'"),
    ({"name": "K K", "factor": "depth", "settings": [{"depth": 1}, {"depth": 2}]}, "'name'"),
])
def test_bad_specs_name_the_file_and_the_problem(spec, message):
    with pytest.raises(StudyError, match="^spec.json: .*" + message.replace("(", r"\(").replace(")", r"\)")):
        study_from_dict(spec, "spec.json")


def test_built_in_studies_vary_one_factor_of_one_base_with_three_seeds():
    names = builtin_names()
    assert names == ["baseline", "kernel_size", "filters", "depth", "stride", "pooling"]
    studies = [resolve_study(name) for name in names]
    assert all(study.seeds == [0, 1, 2] for study in studies)
    assert len({json.dumps(study.base, sort_keys=True) for study in studies}) == 1
    assert {study.name: [s.value(study.factor) for s in study.settings] for study in studies} == {
        "baseline": ["mlp", "cnn"], "kernel_size": [3, 5, 7], "filters": [16, 32, 64], "depth": [1, 2, 3],
        "stride": [1, 2], "pooling": ["max", "avg", "none"]}
    stride = resolve_study("stride")
    assert set(stride.adjustments) == {"pooling"} and "same size" in stride.adjustments["pooling"]
    # Every study includes the base CNN itself, so it is trained once and shared.
    plan = plan_studies(studies)
    shared = [run for run in plan.runs if len(run.members) == len(studies)]
    assert len(shared) == 3 and len(plan.runs) == 3 * 11  # base CNN, MLP and 9 other settings


def test_a_yaml_spec_extends_a_built_in_base(tmp_path):
    spec = tmp_path / "dropout.yaml"
    spec.write_text("name: dropout\nfactor: dropout\nbase: base.json\nseeds: [3, 4, 5]\n"
                    "base_overrides: {epochs: 4}\nsettings:\n  - {label: none, dropout: 0.0}\n"
                    "  - {label: half, dropout: 0.5}\n")
    study = load_study(spec)
    assert study.seeds == [3, 4, 5] and study.base["epochs"] == 4 and study.base["kernel_size"] == 3
    assert study.hyperparameters(study.settings[1], 4) == {**study.base, "dropout": 0.5, "seed": 4}


def test_equal_configs_get_one_run_id_whatever_their_spelling():
    a = canonical_hyperparameters({"model": "cnn", "dense": "128", "kernel_size": 3, "seed": 1})
    b = canonical_hyperparameters({"model": "cnn", "dense": [128], "kernel_size": "3", "seed": "1",
                                   "verbose": 2})
    assert run_id(a) == run_id(b)
    assert run_id(a) != run_id(canonical_hyperparameters({"model": "cnn", "dense": "128", "seed": 2}))


def test_overriding_the_factor_for_every_setting_is_refused():
    with pytest.raises(StudyError, match="cannot override \\['kernel_size'\\]"):
        resolve_study("kernel_size").with_changes(base_overrides={"kernel_size": 5})


def test_the_command_line_refuses_a_two_factor_spec(tmp_path):
    spec = tmp_path / "two.json"
    spec.write_text(json.dumps({"name": "two", "factor": "pooling",
                                "settings": [{"pooling": "max", "dropout": 0.1}, {"pooling": "avg", "dropout": 0.5}]}))
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "run_study.py"), str(spec), "--runs",
                             str(tmp_path / "runs")], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 2
    assert "varies 2 factors: 'pooling', 'dropout'" in result.stderr
    assert not (tmp_path / "runs" / "records").exists()


# --- a real study -----------------------------------------------------------------------------------

def test_every_run_leaves_a_complete_record(study_runs):
    runs, _, studies, summary, _ = study_runs
    records = {p.stem: read_record(p) for p in (runs / "records").glob("*.json")}
    # MLP, CNN (= kernel 3x3) and kernel 5x5, two seeds each: the shared CNN trained once per seed.
    assert len(records) == 6 and sorted(summary["trained"]) == sorted(records) and summary["skipped"] == []
    for rid, record in records.items():
        assert set(RECORD_FIELDS) <= set(record)
        assert record["run_id"] == rid and record["hyperparameters"]["seed"] == str(record["seed"])
        assert len(record["history"]["val_accuracy"]) == record["epochs_completed"] == 1
        assert len(record["seconds_per_epoch"]) == 1 and record["seconds_per_epoch"][0] > 0
        matrix = np.array(record["confusion_matrix"])
        assert matrix.shape == (10, 10) and matrix.sum() == record["num_test"] == 500
        assert np.trace(matrix) / matrix.sum() == pytest.approx(record["test_accuracy"])
        assert record["num_train"] + record["num_val"] == 1500 and record["params"] > 0
    documents = {name: json.loads((runs / "studies" / f"{name}.json").read_text()) for name in ("baseline",
                                                                                                  "kernel_size")}
    cnn = documents["baseline"]["settings"][1]["run_ids"]
    assert documents["kernel_size"]["settings"][0]["run_ids"] == cnn
    params = {s["label"]: records[s["run_ids"][0]]["params"] for d in documents.values() for s in d["settings"]}
    assert params["MLP"] < params["CNN"] == params["3x3"] < params["5x5"]


def test_only_each_studys_best_model_is_kept(study_runs):
    runs = study_runs[0]
    best = best_run_ids(runs)
    assert set(best) == {"baseline", "kernel_size"}
    assert sorted(p.name for p in (runs / "models").iterdir()) == sorted(set(best.values()))
    for rid in best.values():
        assert (runs / "models" / rid / "model.keras").is_file()


def test_a_rerun_trains_nothing_and_leaves_the_records_alone(study_runs):
    runs, channels, studies, _, first_seconds = study_runs
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (runs / "records").glob("*.json")}
    started = time.perf_counter()
    summary = run_local(studies, channels, runs, progress=False)
    seconds = time.perf_counter() - started
    assert summary["trained"] == [] and len(summary["skipped"]) == 6
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (runs / "records").glob("*.json")} == before
    assert seconds < first_seconds / 5


def test_a_missing_record_is_trained_again_and_nothing_else(study_runs):
    runs, channels, studies, _, _ = study_runs
    victim = sorted((runs / "records").glob("mlp-*.json"))[0]
    others = {p.name: p.stat().st_mtime_ns for p in (runs / "records").glob("*.json") if p != victim}
    victim.unlink()
    summary = run_local(studies, channels, runs, progress=False)
    assert summary["trained"] == [victim.stem]
    assert read_record(victim)["run_id"] == victim.stem
    assert {p.name: p.stat().st_mtime_ns for p in (runs / "records").glob("*.json") if p != victim} == others


def test_a_runs_folder_refuses_runs_on_other_data(study_runs, tmp_path):
    from training.experiments.runner import StudyRunError

    runs, _, studies, _, _ = study_runs
    with pytest.raises(StudyRunError, match="data.json: this runs folder holds runs trained on"):
        run_local(studies, {"train": str(tmp_path)}, runs, progress=False)


# --- SageMaker: one training job per (config, seed), against the live moto server ---------------------

def test_sagemaker_runs_launch_one_job_per_run_and_collect_each_jobs_metrics(study_runs, sdk_session, wire_requests,
                                                                             tmp_path):
    """moto reports every job Completed at once and writes nothing; the test then puts at each job's
    model-artifact location what the entry point wrote for the same (config, seed) when trained locally."""
    import io
    import tarfile

    from training.experiments.runner import StudyRunError
    from training.experiments.sagemaker_runner import SageMakerSettings, run_sagemaker

    from .fixtures_sdk import LAB_ROLE, TEST_BUCKET

    local_runs, _, studies, _, _ = study_runs
    sent = wire_requests(sdk_session.boto_session, "CreateTrainingJob")
    channels = {"train": f"s3://{TEST_BUCKET}/fmnist/train/"}
    settings = SageMakerSettings(role=LAB_ROLE, training_image="tensorflow-training:2.16-cpu-py310",
                                 instance_type="ml.c5.xlarge", output_path=f"s3://{TEST_BUCKET}/jobs",
                                 max_parallel=3, poll_seconds=0)
    runs = tmp_path / "runs"
    with pytest.raises(StudyRunError, match=r"s3://convlab-tests/jobs/.*model\.tar\.gz: the job reported this "
                                            "model artifact but it does not exist"):
        run_sagemaker(studies, channels, runs, settings, session=sdk_session, boto_session=sdk_session.boto_session)
    jobs = json.loads((runs / "sagemaker_jobs.json").read_text())
    planned = {run.run_id: run for run in plan_studies(studies).runs}
    assert set(jobs) <= set(planned) and len(jobs) == len(sent) >= 1
    for body in sent:
        rid = next(r for r, job in jobs.items() if job == body["TrainingJobName"])
        assert {k: v for k, v in body["HyperParameters"].items() if k in planned[rid].hyperparameters} == \
            planned[rid].hyperparameters
        assert body["ResourceConfig"]["InstanceType"] == "ml.c5.xlarge"
        assert {m["Name"] for m in body["AlgorithmSpecification"]["MetricDefinitions"]} >= {"test:accuracy"}

    sm, s3 = sdk_session.boto_session.client("sagemaker"), sdk_session.boto_session.client("s3")

    def publish(rid: str, job: str) -> None:
        record = read_record(local_runs / "records" / f"{rid}.json")
        metrics = {k: v for k, v in record.items() if k not in ("run_id", "config_id", "backend")}
        data = json.dumps(metrics).encode()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            info = tarfile.TarInfo("metrics.json")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        uri = sm.describe_training_job(TrainingJobName=job)["ModelArtifacts"]["S3ModelArtifacts"]
        bucket, key = uri[len("s3://"):].split("/", 1)
        s3.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())

    for rid, job in jobs.items():
        publish(rid, job)
    for _ in planned:  # each pass collects what is published, launches more, stops at a job without artifacts
        try:
            run_sagemaker(studies, channels, runs, settings, session=sdk_session, boto_session=sdk_session.boto_session)
            break
        except StudyRunError:
            jobs = json.loads((runs / "sagemaker_jobs.json").read_text())
            for rid, job in jobs.items():
                if not (runs / "records" / f"{rid}.json").exists():
                    publish(rid, job)
    jobs = json.loads((runs / "sagemaker_jobs.json").read_text())
    assert set(jobs) == set(planned) and len(sent) == len(planned)  # every run launched exactly once
    for rid in planned:
        record = read_record(runs / "records" / f"{rid}.json")
        local = read_record(local_runs / "records" / f"{rid}.json")
        assert record["backend"] == "sagemaker" and record["job_name"] == jobs[rid]
        assert record["test_accuracy"] == local["test_accuracy"]
        assert record["hyperparameters"] == local["hyperparameters"]
    for rid in set(best_run_ids(runs).values()):
        assert (runs / "models" / rid / "metrics.json").is_file()
    again = run_sagemaker(studies, channels, runs, settings, session=sdk_session, boto_session=sdk_session.boto_session)
    assert again["trained"] == [] and len(sent) == len(planned)
