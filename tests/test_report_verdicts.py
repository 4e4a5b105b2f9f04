"""Every sentence the report writes, checked against records with KNOWN numbers (record files in the
format training/experiments/records.py writes, built by tests/synthetic_runs.py)."""
from __future__ import annotations

import logging
import re

import numpy as np
import pytest

from .synthetic_runs import CLASSES, study, write_runs


def _cnn(label, kernel, accuracy, params=50_000, flops=2_000_000, seconds=None, **extra):
    return {"label": label, "kernel_size": kernel, "accuracy": accuracy, "params": params, "flops": flops,
            "seconds": seconds or [3.0] * len(accuracy), **extra}


def _summary(tmp_path, settings, seeds=3):
    from report.analysis import load_study_documents, summarize
    from training.experiments.records import load_records

    runs = write_runs(tmp_path / "runs", [study("kernel_size", "kernel_size", settings, seeds=seeds)])
    return summarize(load_study_documents(runs)[0], load_records(runs))


def _report(tmp_path, studies):
    from report import build_report

    runs = write_runs(tmp_path / "runs", studies)
    build_report(runs, "known", tmp_path / "reports")
    return (tmp_path / "reports" / "known" / "README.md").read_text()


def _bullets(readme: str, heading: str) -> list[str]:
    """The bullet list under 'What the numbers support:' of the section titled `heading`."""
    section = readme.split(f"## {heading}\n", 1)[1] if f"## {heading}\n" in readme else \
        readme.split(f"### {heading}\n", 1)[1]
    after = section.split("What the numbers support:\n\n", 1)[1]
    return [line[2:] for line in after.split("\n\n", 1)[0].splitlines()]


def test_the_highest_setting_is_named_with_its_mean_std_and_n(tmp_path):
    settings = [_cnn("3x3", 3, [0.80, 0.82, 0.84]), _cnn("5x5", 5, [0.90, 0.91, 0.95]),
                _cnn("7x7", 7, [0.86, 0.88, 0.90])]
    lines = _bullets(_report(tmp_path, [study("kernel_size", "kernel_size", settings)]), "Kernel size")
    # 5x5: mean 92.00, sample std of (90, 91, 95) = sqrt(((-2)^2 + (-1)^2 + 3^2) / 2) = sqrt(7) = 2.6458
    assert lines[0] == "Highest mean test accuracy: **5x5** (92.00 ± 2.65 %, n = 3 seeds)."
    # The others follow in descending order of their means.
    assert lines[1].startswith("5x5 vs 7x7: 4.00 points")
    assert lines[2].startswith("5x5 vs 3x3: 10.00 points")


def test_a_tie_in_the_mean_goes_to_the_setting_with_fewer_parameters(tmp_path):
    summary = _summary(tmp_path, [_cnn("3x3", 3, [0.90, 0.92], params=90_000),
                                  _cnn("5x5", 5, [0.92, 0.90], params=60_000)], seeds=2)
    assert summary.best().label == "5x5"


def _setting(label: str, accuracies: list[float]):
    from report.analysis import SettingSummary

    records = [{"seed": seed, "test_accuracy": value} for seed, value in enumerate(accuracies)]
    return SettingSummary(label, label, f"id-{label}", [f"{label}-{i}" for i in range(len(records))], records, {})


@pytest.mark.parametrize("b_values, expected", [
    # a = (0.25, 0.5, 0.75): mean 0.5, sample std exactly 0.25 -> [0.25, 0.75] (exact in binary floating point)
    ([0.875, 1.0, 1.125], False),       # [0.875, 1.125]: apart
    ([0.5, 0.75, 1.0], True),           # [0.5, 1.0]: shares [0.5, 0.75]
    ([0.75, 0.75, 0.75], True),         # [0.75, 0.75]: touches a's upper end exactly
    ([0.7500001] * 3, False),           # just above it
    ([0.0, 0.0, 0.0], False),           # [0, 0]: below
    ([0.25, 0.25, 0.25], True),         # touches a's lower end exactly
    ([0.2499999] * 3, False),           # just below it
    ([0.0, 0.5, 1.0], True),            # [0, 1] contains a
])
def test_overlap_is_decided_on_mean_plus_minus_one_sample_std(b_values, expected):
    from report.analysis import overlaps

    a, b = _setting("a", [0.25, 0.5, 0.75]), _setting("b", b_values)
    assert a.interval() == (0.25, 0.75)
    assert overlaps(a, b) is expected and overlaps(b, a) is expected


@pytest.mark.parametrize("b_accuracy, apart", [([0.92, 0.93, 0.94], True), ([0.90, 0.91, 0.92], False),
                                               ([0.905, 0.915, 0.925], False)])
def test_the_report_sentence_follows_the_overlap(tmp_path, b_accuracy, apart):
    from report.analysis import conclusions

    # a = 90 ± 1 -> [89, 91]; b = 93 ± 1 -> [92, 94] (apart), 91 ± 1 -> [90, 92], 91.5 ± 1 -> [90.5, 92.5]
    summary = _summary(tmp_path, [_cnn("3x3", 3, [0.89, 0.90, 0.91]), _cnn("5x5", 5, b_accuracy)])
    line = conclusions(summary)[1]
    gap = 100 * (np.mean(b_accuracy) - 0.90)
    if apart:
        assert line.startswith(f"5x5 vs 3x3: {gap:.2f} points higher and the intervals (mean ± 1 std) do not "
                               "overlap: the difference is larger than the seed-to-seed spread in these runs.")
    else:
        assert line.startswith(f"5x5 vs 3x3: {gap:.2f} points apart, but the intervals (mean ± 1 std over seeds) "
                               "overlap, so these runs do not separate the two settings.")


def test_a_single_seed_is_never_called_a_real_difference(tmp_path):
    from report.analysis import conclusions

    summary = _summary(tmp_path, [_cnn("3x3", 3, [0.80]), _cnn("5x5", 5, [0.95])], seeds=1)
    lines = conclusions(summary)
    assert lines[0] == "Highest mean test accuracy: **5x5** (95.00 ± 0.00 %, n = 1 seed)."
    assert "with a single seed there is no seed-to-seed spread" in lines[1]
    assert "do not overlap" not in " ".join(lines) and "is cheaper" not in " ".join(lines)
    assert lines[-1].startswith("Only 1 seed for some settings")


def test_cost_ratios_are_the_ratios_of_the_recorded_numbers(tmp_path):
    settings = [_cnn("3x3", 3, [0.90, 0.91, 0.92], params=40_000, flops=1_000_000, seconds=[2.0, 2.0, 2.0]),
                _cnn("5x5", 5, [0.905, 0.915, 0.925], params=100_000, flops=4_500_000, seconds=[5.0, 6.0, 7.0]),
                _cnn("7x7", 7, [0.80, 0.81, 0.82], params=1_000_000, flops=90_000_000, seconds=[20, 20, 20])]
    lines = _bullets(_report(tmp_path, [study("kernel_size", "kernel_size", settings)]), "Kernel size")
    assert lines[0].startswith("Highest mean test accuracy: **5x5** (91.50 ± 1.00 %")
    # 5x5 vs 3x3: 100k / 40k = 2.50x params, 4.5M / 1M = 4.50x FLOPs, 6 s / 2 s = 3.00x time; they overlap
    # and 3x3 is smaller on both counts.
    assert lines[1] == ("5x5 vs 3x3: 0.50 points apart, but the intervals (mean ± 1 std over seeds) overlap, so "
                        "these runs do not separate the two settings. 5x5 uses 2.50x the parameters, 4.50x the "
                        "FLOPs per image and 3.00x the training time per epoch of 3x3; 3x3 is cheaper and, as far "
                        "as these runs can tell, as good.")
    # 5x5 vs 7x7: 0.10x params, 0.05x FLOPs, 0.30x time; the difference is real and 7x7 is not cheaper.
    assert lines[2] == ("5x5 vs 7x7: 10.50 points higher and the intervals (mean ± 1 std) do not overlap: the "
                        "difference is larger than the seed-to-seed spread in these runs. 5x5 uses 0.10x the "
                        "parameters, 0.05x the FLOPs per image and 0.30x the training time per epoch of 7x7.")
    assert lines[3] == ("Training time per epoch ranges from 2.00 s (3x3) to 20.00 s (7x7) on the machine that "
                        "ran them.")
    assert len(lines) == 4  # three seeds each: no warning about few seeds


def test_fewer_parameters_but_more_flops_is_not_called_cheaper(tmp_path):
    from report.analysis import conclusions, ratio

    # The stride/pooling trade: same accuracy, the runner-up has fewer parameters but more FLOPs.
    summary = _summary(tmp_path, [_cnn("3x3", 3, [0.90, 0.91], params=50_000, flops=1_000_000),
                                  _cnn("5x5", 5, [0.90, 0.90], params=20_000, flops=3_000_000)], seeds=2)
    line = conclusions(summary)[1]
    assert "3x3 uses 2.50x the parameters, 0.33x the FLOPs per image" in line
    assert "cheaper" not in line
    assert [ratio(1, 3), ratio(25, 2), ratio(123_456, 2), ratio(1, 0)] == ["0.33x", "12.5x", "61,728.0x", "n/a"]


def test_most_confused_pairs_come_from_the_pooled_confusion_matrix(tmp_path):
    from report.analysis import top_confusions

    first = np.diag([90] * 10)
    first[6, 0], first[4, 2], first[2, 4], first[9, 7] = 10, 7, 3, 1   # Shirt->T-shirt, Coat->Pullover, ...
    second = np.diag([90] * 10)
    second[6, 0], second[4, 2], second[2, 4], second[7, 9] = 12, 4, 11, 1
    summary = _summary(tmp_path, [_cnn("3x3", 3, [0.9, 0.9], confusions=[first.tolist(), second.tolist()]),
                                  _cnn("5x5", 5, [0.9, 0.9])], seeds=2)
    setting = summary.settings[0]
    # Pooled: Shirt->T-shirt 22, Pullover->Coat 14, Coat->Pullover 11; ties (Sneaker/Ankle boot 1 each) not shown.
    assert top_confusions(setting, CLASSES) == [
        "Shirt taken for T-shirt/top: 22 test images over 2 seeds (11.0 per seed, 10.9 % of Shirt)",
        "Pullover taken for Coat: 14 test images over 2 seeds (7.0 per seed, 7.2 % of Pullover)",
        "Coat taken for Pullover: 11 test images over 2 seeds (5.5 per seed, 5.8 % of Coat)",
    ]
    assert len(top_confusions(setting, CLASSES, limit=10)) == 5  # only the 5 non-zero cells
    # Ties go to the earlier true class: Sneaker->Ankle boot (row 7) before Ankle boot->Sneaker (row 9).
    assert [p.split(":")[0] for p in top_confusions(setting, CLASSES, limit=5)[3:]] == \
        ["Sneaker taken for Ankle boot", "Ankle boot taken for Sneaker"]


def test_the_report_prints_the_confusions_of_the_records(tmp_path):
    confusion = np.diag([95] * 10)
    confusion[6, 0], confusion[0, 6], confusion[4, 2] = 5, 3, 2
    settings = [{"label": "MLP", "model": "mlp", "accuracy": [0.85, 0.86], "params": 100_000, "flops": 200_000,
                 "seconds": [1.0, 1.0], "confusion": confusion.tolist()},
                {"label": "CNN", "model": "cnn", "accuracy": [0.90, 0.91], "params": 50_000, "flops": 2_000_000,
                 "seconds": [3.0, 3.0]}]
    readme = _report(tmp_path, [study("baseline", "model", settings, seeds=2, title="MLP vs CNN")])
    line = next(x for x in readme.splitlines() if x.startswith("- MLP: "))
    assert line == ("- MLP: Shirt taken for T-shirt/top: 10 test images over 2 seeds (5.0 per seed, 5.0 % of Shirt); "
                    "T-shirt/top taken for Shirt: 6 test images over 2 seeds (3.0 per seed, 3.1 % of T-shirt/top); "
                    "Coat taken for Pullover: 4 test images over 2 seeds (2.0 per seed, 2.1 % of Coat)")


def test_error_bars_are_the_sample_std_over_seeds_and_say_n(tmp_path):
    settings = [_cnn("3x3", 3, [0.90, 0.92, 0.97]), _cnn("5x5", 5, [0.88, 0.89])]
    readme = _report(tmp_path, [study("kernel_size", "kernel_size", settings)])
    values = np.array([90.0, 92.0, 97.0])
    sample, population = values.std(ddof=1), values.std(ddof=0)
    assert f"{sample:.2f}" != f"{population:.2f}"  # 3.61 vs 2.94: the test tells the two apart
    row = next(line for line in readme.splitlines() if line.startswith("| 3x3 |"))
    assert f"| 3/3 | {values.mean():.2f} ± {sample:.2f} |" in row
    row = next(line for line in readme.splitlines() if line.startswith("| 5x5 |"))
    assert "| 2/3 | 88.50 ± 0.71 |" in row  # one run not recorded: n = 2, and the table says so
    assert "**Incomplete:** 5 of 6 planned runs are recorded." in readme
    assert "**How to read the error bars:**" in readme
    assert "1 sample standard deviation of those n values (n - 1 in the denominator)" in readme
    assert "not a standard error or a confidence interval" in readme
    assert re.search(r"mean over the n seeds .*±1 sample standard deviation", readme)


def test_figure_titles_fit_inside_their_figures(tmp_path, caplog):
    from report.plotting import layout, plt, titles_outside

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.set_title("A study with a long name: test accuracy, mean ± 1 sample std over seeds, dots the seeds")
    fig.suptitle("and a suptitle that is much wider than three inches of figure can ever hold in one line")
    assert len(titles_outside(fig)) == 2  # the check sees a cut-off title
    layout(fig)  # wraps the titles, then makes room for their lines
    assert titles_outside(fig) == []
    assert "\n" in ax.get_title()
    plt.close(fig)
    long = "A kernel size study whose title is long enough to be cut off at the edge of a figure"
    settings = [_cnn("3x3", 3, [0.90, 0.91]), _cnn("5x5", 5, [0.92, 0.93]), _cnn("7x7", 7, [0.91, 0.90])]
    with caplog.at_level(logging.WARNING, logger="report.plotting"):
        _report(tmp_path, [study("kernel_size", "kernel_size", settings, seeds=2, title=long)])
    assert not [r for r in caplog.records if "past the figure's edge" in r.getMessage()]


def test_synthetic_reports_are_byte_identical(tmp_path):
    from report import build_report

    settings = [_cnn("3x3", 3, [0.90, 0.91]), _cnn("5x5", 5, [0.92, 0.93])]
    runs = write_runs(tmp_path / "runs", [study("kernel_size", "kernel_size", settings, seeds=2)])
    first = build_report(runs, "same", tmp_path / "a")
    build_report(runs, "same", tmp_path / "b")
    names = ["README.md", "index.html"] + [f"figures/{p.name}" for p in first["figures"]]
    assert len(names) == 5
    for name in names:
        assert (tmp_path / "a" / "same" / name).read_bytes() == (tmp_path / "b" / "same" / name).read_bytes(), name
