"""A small real study, run once per test session through the real entry point: the baseline MLP vs
the CNN, and a kernel-size study whose 3x3 setting is the same CNN (so it shares those runs)."""
from __future__ import annotations

import time

import pytest

TINY = {"epochs": 1, "batch_size": 64, "filters": 8, "dense": "32", "max_train_samples": 1500,
        "max_test_samples": 500}
BASELINE_SPEC = {"name": "baseline", "title": "MLP vs CNN", "factor": "model", "seeds": 2,
                 "base_overrides": TINY,
                 "settings": [{"label": "MLP", "model": "mlp"}, {"label": "CNN", "model": "cnn"}]}
KERNEL_SPEC = {"name": "kernel_size", "title": "Kernel size", "factor": "kernel_size", "seeds": 2,
               "base_overrides": TINY,
               "settings": [{"label": "3x3", "kernel_size": 3}, {"label": "5x5", "kernel_size": 5}]}


@pytest.fixture(scope="session")
def study_runs(fashion_subset_dir, tmp_path_factory):
    """(runs folder, channels, studies, run_local summary, seconds the first run took)."""
    from training.experiments import study_from_dict
    from training.experiments.runner import run_local

    studies = [study_from_dict(BASELINE_SPEC, "baseline.json"), study_from_dict(KERNEL_SPEC, "kernel.json")]
    runs = tmp_path_factory.mktemp("study") / "runs"
    channels = {"train": str(fashion_subset_dir)}
    started = time.perf_counter()
    summary = run_local(studies, channels, runs, progress=False)
    return runs, channels, studies, summary, time.perf_counter() - started


@pytest.fixture(scope="session")
def study_report(study_runs, tmp_path_factory):
    """The report of the study, written once: (paths returned by build_report, output folder)."""
    from report import build_report

    runs = study_runs[0]
    out = tmp_path_factory.mktemp("reports")
    return build_report(runs, "tiny", out), out
