"""Training to convergence: the plateau schedule, early stopping that keeps the best epoch out of the
last share of the run, resumed from a checkpoint, and a study trained by two pinned worker processes."""
from __future__ import annotations

import json

import pytest

from training.callbacks import should_stop
from training.experiments.records import canonical_hyperparameters
from training.experiments.spec import study_from_dict
from training.hyperparameters import parse_hyperparameters
from training.models import ConfigError

TINY = {"model": "cnn", "depth": "1", "filters": "8", "max_train_samples": "1500", "max_test_samples": "300",
        "verbose": "0", "export_onnx": "false", "seed": "0"}


@pytest.mark.parametrize("epochs, best, patience, fraction, stop", [
    (10, 4, 6, 0.0, True),     # 6 epochs without a better one
    (10, 5, 6, 0.0, False),
    (40, 33, 6, 0.2, False),   # 7 waited, but 20 % of 40 is 8: the best would be in the last 20 %
    (40, 32, 6, 0.2, True),
    (10, 1, 0, 0.2, False),    # no patience: never stops
])
def test_early_stopping_waits_for_both_the_patience_and_the_share_of_the_run(epochs, best, patience, fraction, stop):
    assert should_stop(epochs, best, patience, fraction) is stop


def test_a_run_stopped_by_the_fraction_rule_never_has_its_best_epoch_in_the_last_fifth():
    for best in range(1, 200):
        epochs = best
        while not should_stop(epochs, best, 6, 0.2):
            epochs += 1
        assert best <= 0.8 * epochs


def test_the_new_stopping_share_is_checked_and_leaves_earlier_run_ids_alone():
    with pytest.raises(ConfigError, match="'early_stopping_fraction': expected 0 <= value < 1, got 1.5"):
        parse_hyperparameters({"early_stopping_fraction": "1.5"})[0].validate()
    assert "early_stopping_fraction" not in canonical_hyperparameters({"model": "cnn"})
    assert canonical_hyperparameters({"model": "cnn", "early_stopping_fraction": "0.2"})[
        "early_stopping_fraction"] == "0.2"


def test_plateau_halves_the_rate_stops_on_patience_and_resumes_at_the_rate_it_reached(fashion_subset_dir, tmp_path):
    from training.train import run_training

    hp = {**TINY, "lr_schedule": "plateau", "learning_rate": "0.02", "early_stopping_patience": "3",
          "early_stopping_fraction": "0.2", "epochs": "6"}
    first = run_training(dict(hp), {"train": str(fashion_subset_dir)}, str(tmp_path / "m1"),
                         checkpoint_dir=str(tmp_path / "ckpt"))
    rates = first["history"]["learning_rate"]
    assert len(rates) == first["epochs_completed"]
    assert rates[0] == pytest.approx(0.02)
    assert all(later <= earlier for earlier, later in zip(rates, rates[1:]))
    # Longer budget: the run resumes from the checkpoint with the rate it had reached.
    second = run_training(dict(hp, epochs="40"), {"train": str(fashion_subset_dir)}, str(tmp_path / "m2"),
                          checkpoint_dir=str(tmp_path / "ckpt"))
    rates = second["history"]["learning_rate"]
    assert rates[:len(first["history"]["learning_rate"])] == first["history"]["learning_rate"]
    assert min(rates) < 0.02, "no halving in 40 epochs of a plateau"
    if second["epochs_completed"] < 40:   # stopped on patience: the best epoch is outside the last 20 %
        assert second["best_epoch"] <= 0.8 * second["epochs_completed"]
        assert second["epochs_completed"] - second["best_epoch"] >= 3


def test_two_pinned_workers_train_a_study_and_record_every_run(fashion_subset_dir, tmp_path):
    from training.experiments.runner import run_local

    study = study_from_dict({"name": "k", "factor": "kernel_size",
                             "base": {"hyperparameters": {**TINY, "epochs": "1"}},
                             "settings": [{"kernel_size": 3}, {"kernel_size": 5}], "seeds": 2})
    summary = run_local([study], {"train": str(fashion_subset_dir)}, tmp_path, progress=False, workers=2)
    assert len(summary["trained"]) == 4
    records = sorted((tmp_path / "records").glob("*.json"))
    assert [p.stem for p in records] == sorted(summary["trained"])
    assert all(json.loads(p.read_text())["test_accuracy"] > 0.3 for p in records)
    assert len(list((tmp_path / "models").iterdir())) == 1  # the study's best model only
    again = run_local([study], {"train": str(fashion_subset_dir)}, tmp_path, progress=False, workers=2)
    assert again["trained"] == [] and len(again["skipped"]) == 4


@pytest.mark.parametrize("runs, changes", [
    ("docs/lab", ["epochs=4"]),
    ("docs/lab/converged", ["epochs=60", "lr_schedule=plateau", "early_stopping_patience=6",
                            "early_stopping_fraction=0.2"]),
])
def test_the_published_studies_resume_from_their_records(runs, changes):
    """Every recorded run is one the study plans today, so rerunning the README's command trains
    only what is missing (a hyperparameter added later must not change earlier run ids)."""
    from pathlib import Path

    from training.experiments.cli import parse_args, select_studies
    from training.experiments.runner import plan_studies

    folder = Path(__file__).resolve().parent.parent / runs
    args = parse_args(["--all", "--runs", str(folder)] + [part for change in changes for part in ("--set", change)])
    planned = {run.run_id for run in plan_studies(select_studies(args)).runs}
    recorded = {path.stem for path in (folder / "records").glob("*.json")}
    assert recorded, f"no records in {folder}"
    assert recorded <= planned, f"records no plan reaches: {sorted(recorded - planned)[:5]}"
