"""The report of two budgets side by side, from runs folders with KNOWN numbers (tests/synthetic_runs.py):
the verdicts that change, pending settings of a budget still running, the convergence check, FLOPs."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .synthetic_runs import study, write_runs

REPO = Path(__file__).resolve().parent.parent
LONG = {"epochs": 20, "early_stopping_patience": 3, "lr_schedule": "plateau", "filters": 8, "dense": "32"}
SHORT = {"epochs": 2, "filters": 8, "dense": "32"}


def _kernel(budget: dict, settings: list[dict]) -> dict:
    return study("kernel_size", "kernel_size", settings, base_overrides=budget)


def _cnn(label, kernel, accuracy, flops=2_000_000, **extra):
    return {"label": label, "kernel_size": kernel, "accuracy": accuracy, "params": 50_000, "flops": flops,
            "seconds": [3.0] * len(accuracy), **extra}


@pytest.fixture()
def two_budgets(tmp_path):
    # Long budget, still running: 3x3 done (seed 1 stopped with its best epoch in the last 20 %, seed 2 at
    # its cap), 5x5 two seeds of three, 7x7 none yet.
    long = write_runs(tmp_path / "long", [_kernel(LONG, [
        _cnn("3x3", 3, [0.930, 0.925, 0.935], epochs_run=[10, 10, 20], best=[7, 9, 14]),
        _cnn("5x5", 5, [0.928, 0.931], flops=5_000_000, epochs_run=[12, 15], best=[6, 12]),
        _cnn("7x7", 7, [])])])
    # Short budget: 5x5 is 1 point above 3x3 on every seed (a real difference), 7x7 unresolved against both.
    short = write_runs(tmp_path / "short", [_kernel(SHORT, [
        _cnn("3x3", 3, [0.900, 0.905, 0.910]), _cnn("5x5", 5, [0.910, 0.915, 0.920], flops=5_000_000),
        _cnn("7x7", 7, [0.890, 0.915, 0.930])])])
    return long, short


def _report(tmp_path, runs, compare, **options) -> str:
    from report import build_report

    build_report(runs, "budgets", tmp_path / "out", compare=compare, **options)
    return (tmp_path / "out" / "budgets" / "README.md").read_text()


def _rows(readme: str, header_start: str) -> dict[str, list[str]]:
    lines = readme.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        rows[cells[0]] = cells
    return rows


def test_both_budgets_side_by_side_with_the_verdicts_that_change(two_budgets, tmp_path):
    readme = _report(tmp_path, *two_budgets)
    long, short = "up to 20 epochs, early stopping", "2 epochs"
    assert f"This report is about the budget **{long}** (`long`) and sets it beside **{short}** (`short`)" in readme
    recipe = _rows(readme, "| hyperparameter that differs |")
    assert recipe["epochs"] == ["epochs", "20", "2"] and recipe["early_stopping_patience"][1:] == ["3", "0"]
    assert recipe["lr_schedule"][1:] == ["plateau", "cosine"] and "kernel_size" not in recipe
    settings = _rows(readme, "| setting | test acc. % (up to 20")
    assert settings["3x3"][1:3] == ["93.00 ± 0.50 (n=3)", "90.50 ± 0.50 (n=3)"]
    assert settings["5x5"][1] == "92.95 ± 0.21 (n=2)" and settings["7x7"][1] == "pending"
    assert settings["7x7"][3:5] == ["pending", "pending"]
    pairs = _rows(readme, "| difference |")
    # Pairs in the order of the short budget's means (the long one has not run 7x7): 5x5, 7x7, 3x3.
    assert list(pairs) == ["5x5 - 7x7", "5x5 - 3x3", "7x7 - 3x3"]
    # Long, 5x5 - 3x3 over the seeds both ran (0, 1): -0.2 and +0.6 -> 0.20 ± t(1) 12.706 x 0.40 = ± 5.08.
    assert pairs["5x5 - 3x3"][1:] == ["+0.20 [-4.88, +5.28] (paired t, 2 seeds)", "unresolved",
                                      "+1.00 [+1.00, +1.00] (paired t, 3 seeds)", "5x5 better", "**yes**"]
    # Short, 7x7 - 3x3: -1, +1, +2 -> 0.67 ± 4.303 x 1.5275 / sqrt(3) = ± 3.79.
    assert pairs["7x7 - 3x3"][1:] == ["pending", "pending", "+0.67 [-3.13, +4.46] (paired t, 3 seeds)",
                                      "unresolved", "not yet known"]
    assert ("1 verdict(s) change with the budget. 4 of 9 planned runs of up to 20 epochs, early stopping are not "
            "recorded yet: their settings are pending and their verdicts are not yet known.") in readme
    assert "- Kernel size, 5x5 vs 3x3: up to 20 epochs, early stopping: unresolved; 2 epochs: 5x5 better" in readme
    # The long budget's highest mean is among the settings it has run (7x7 is pending there).
    assert "Highest mean test accuracy: up to 20 epochs, early stopping: 3x3; 2 epochs: 5x5." in readme


def test_every_run_of_the_report_budget_is_checked_for_convergence(two_budgets, tmp_path):
    readme = _report(tmp_path, *two_budgets)
    check = {row[2] + row[1].split(" / ")[1]: row for row in _rows(readme, "| run | study / setting | seed | epochs "
                                                                          "run / cap |").values()}
    assert check["03x3"][3:] == ["10 / 20", "7", "9-10", "yes", "yes", "yes"]
    assert check["13x3"][3:] == ["10 / 20", "9", "9-10", "no", "yes", "**no**"]   # best epoch 9 of 10
    assert check["23x3"][3:] == ["20 / 20", "14", "17-20", "yes", "no", "**no**"]  # ran to its cap
    assert check["15x5"][3:] == ["15 / 20", "12", "13-15", "yes", "yes", "yes"]     # 15 - 12 = 3 = 20 % of 15
    assert len(check) == 5
    assert ("- up to 20 epochs, early stopping: 3 of 5 recorded runs meet the criterion; 1 ran to their epoch "
            "cap and 0 had their best validation epoch as their last") in readme
    assert "- 2 epochs: 0 of 9 recorded runs meet the criterion; 9 ran to their epoch cap and 9 had" in readme


def test_costs_are_stated_in_flops(two_budgets, tmp_path):
    from report.convergence import training_flops

    readme = _report(tmp_path, *two_budgets)
    # A record: 5,400 training and 600 validation images, 1,000 test images (tests/synthetic_runs.py).
    record = {"flops_per_image": 2_000_000, "num_train": 5400, "num_val": 600, "num_test": 1000, "epochs_completed": 10}
    assert training_flops(record) == 2e6 * ((3 * 5400 + 600) * 10 + 1000) == 3.38e11
    costs = _rows(readme, "| budget | runs recorded")
    # Long: 3x3 runs of 10, 10, 20 epochs at 2 MFLOP, 5x5 runs of 12 and 15 epochs at 5 MFLOP per image.
    # 2e6 x (16,800 x 40 + 3 x 1,000) + 5e6 x (16,800 x 27 + 2 x 1,000) = 1.350e12 + 2.278e12 = 3.628e12.
    assert costs["up to 20 epochs, early stopping"][1:5] == ["5 / 9", "13.4 (10-20)", "725.60 GFLOP", "3.63 TFLOP"]
    assert costs["2 epochs"][1:3] == ["9 / 9", "2.0 (2-2)"]
    settings = _rows(readme, "| setting | test acc. % (up to 20")
    # 3x3, long: 40 / 3 epochs and 2e6 x (16,800 x 40 / 3 + 1,000) = 450 GFLOP per run; short: 2e6 x 34,600.
    assert settings["3x3"][3:] == ["13.3", "450.00 GFLOP", "2.0", "69.20 GFLOP"]


def test_convergence_of_one_run():
    from report.convergence import Convergence

    assert Convergence(22, 60, 16).converged
    assert Convergence(10, 60, 8).converged and Convergence(10, 60, 8).last_share_starts == 9  # 10 - 8 = 2
    assert not Convergence(10, 60, 9).best_outside_last_share
    assert not Convergence(60, 60, 30).stopped_early and not Convergence(60, 60, 30).converged


def test_budget_names_and_their_errors(two_budgets, tmp_path):
    from report.build import ReportError

    long, short = two_budgets
    readme = _report(tmp_path, long, short, budget_names=("converged", "quick"))
    assert "| setting | test acc. % (converged) | test acc. % (quick) |" in readme
    with pytest.raises(ReportError, match="both budgets are called 'same'"):
        _report(tmp_path, long, short, budget_names=("same", "same"))
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "make_report.py"), "--runs", str(long),
                             "--budget-names", "a,b", "--out", str(tmp_path / "cli")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "--budget-names 'a,b': expected two names, A,B, with --compare" in result.stderr
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "make_report.py"), "--runs", str(long),
                             "--compare", str(tmp_path / "nowhere"), "--out", str(tmp_path / "cli")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and f"{tmp_path / 'nowhere'}: not a runs folder (no data.json)" in result.stderr
