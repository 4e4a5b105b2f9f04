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
    # Every pair follows, in descending order of the means.
    assert lines[1].startswith("5x5 vs 7x7: difference +4.00 points")
    assert lines[2].startswith("5x5 vs 3x3: difference +10.00 points")
    assert lines[3].startswith("7x7 vs 3x3: difference +6.00 points")


def test_a_tie_in_the_mean_goes_to_the_setting_with_fewer_parameters(tmp_path):
    summary = _summary(tmp_path, [_cnn("3x3", 3, [0.90, 0.92], params=90_000),
                                  _cnn("5x5", 5, [0.92, 0.90], params=60_000)], seeds=2)
    assert summary.best().label == "5x5"


@pytest.mark.parametrize("p, df, expected", [
    (0.975, 1, 12.706205), (0.975, 2, 4.302653), (0.975, 3, 3.182446), (0.975, 4, 2.776445),
    (0.975, 10, 2.228139), (0.975, 30, 2.042272), (0.975, 1e7, 1.959964), (0.95, 5, 2.015048),
    (0.995, 2, 9.924843), (0.025, 2, -4.302653), (0.5, 3, 0.0),
])
def test_the_t_quantile_matches_the_tables(p, df, expected):
    from report.statistics import t_cdf, t_quantile

    assert t_quantile(p, df) == pytest.approx(expected, abs=2e-6)
    assert t_cdf(t_quantile(p, df), df) == pytest.approx(p, abs=1e-12)


def test_the_t_quantile_of_a_fractional_df_matches_scipy():
    from report.statistics import t_quantile

    stats = pytest.importorskip("scipy.stats")
    for df in (1.3, 2.5, 3.806, 7.75, 48.2):
        for p in (0.6, 0.9, 0.975, 0.999):
            assert t_quantile(p, df) == pytest.approx(float(stats.t.ppf(p, df)), rel=1e-10)
    with pytest.raises(ValueError, match="0 < p < 1 and df > 0"):
        t_quantile(1.0, 3)


def _points(found):
    return [round(100 * x, 2) for x in (found.estimate, found.low, found.high)]


def test_known_answer_a_clear_difference():
    from report.statistics import PAIRED, difference

    # Per-seed differences 3, 4, 5 points: mean 4, sd 1, standard error 1/sqrt(3) = 0.5774;
    # t(0.975, 2) = 4.3027, half width 2.4841 -> [1.52, 6.48], which excludes 0.
    found = difference({0: 0.92, 1: 0.94, 2: 0.96}, {0: 0.89, 1: 0.90, 2: 0.91})
    assert found.method == PAIRED and found.n == "3 seeds" and found.df == 2
    assert _points(found) == [4.0, 1.52, 6.48]
    assert found.real


def test_known_answer_an_overlapping_difference():
    from report.statistics import PAIRED, WELCH, difference, welch_interval

    # Per-seed differences 4.5, 2.5, 0.5 points: mean 2.5, sd 2, standard error 1.1547, half width 4.9683
    # -> [-2.47, 7.47]: includes 0. (mean ± 1 std: [89, 91] against [91.5, 93.5], which do not overlap.)
    a, b = {0: 0.935, 1: 0.925, 2: 0.915}, {0: 0.89, 1: 0.90, 2: 0.91}
    found = difference(a, b)
    assert found.method == PAIRED and _points(found) == [2.5, -2.47, 7.47]
    assert not found.real
    # Unpaired, the same numbers are resolved: Welch's standard error sqrt(1/3 + 1/3) = 0.8165 points,
    # df 4, t 2.7764 -> half width 2.2670 -> [0.23, 4.77]. Pairing by seed is what the runs' design gives.
    welch = welch_interval(list(a.values()), list(b.values()))
    assert welch.method == WELCH and welch.df == pytest.approx(4.0) and _points(welch) == [2.5, 0.23, 4.77]


def test_known_answer_a_tiny_spread_with_a_tiny_difference():
    from report.statistics import difference

    # Per-seed differences 0.05, 0.04, 0.05 points: mean 0.0467, sd 0.005774, standard error 0.003333,
    # half width 0.01434 -> [0.0323, 0.0610]: excludes 0, so a 0.05-point difference is real here.
    found = difference({0: 0.9005, 1: 0.9006, 2: 0.9009}, {0: 0.9000, 1: 0.9002, 2: 0.9004})
    assert [round(100 * x, 4) for x in (found.estimate, found.low, found.high)] == [0.0467, 0.0323, 0.0610]
    assert found.real
    # Identical differences on every seed: a zero-width interval, real unless the difference is 0.
    assert difference({0: 0.91, 1: 0.92}, {0: 0.90, 1: 0.91}).real
    assert not difference({0: 0.90, 1: 0.91}, {0: 0.90, 1: 0.91}).real


def test_pairs_use_the_shared_seeds_else_welch_else_no_interval():
    from report.statistics import PAIRED, WELCH, difference

    found = difference({0: 0.92, 1: 0.93, 2: 0.97}, {0: 0.90, 1: 0.90})
    assert found.method == PAIRED and found.n == "2 seeds" and _points(found)[0] == 2.5  # seed 2 has no partner
    found = difference({0: 0.92, 1: 0.93}, {2: 0.90, 3: 0.91})
    assert found.method == WELCH and found.n == "2 + 2 runs" and _points(found)[0] == 2.0
    assert difference({0: 0.92}, {0: 0.90, 1: 0.91}) is None


@pytest.mark.parametrize("b_accuracy, real", [([0.92, 0.94, 0.96], True), ([0.90, 0.92, 0.94], False),
                                              ([0.935, 0.925, 0.915], False)])
def test_the_report_sentence_follows_the_interval(tmp_path, b_accuracy, real):
    from report.verdicts import conclusions

    summary = _summary(tmp_path, [_cnn("3x3", 3, [0.89, 0.90, 0.91]), _cnn("5x5", 5, b_accuracy)])
    line = conclusions(summary)[1]
    gap = 100 * (np.mean(b_accuracy) - 0.90)
    assert line.startswith(f"5x5 vs 3x3: difference +{gap:.2f} points, 95 % interval [")
    assert "(paired t over 3 seeds)" in line
    if real:
        assert ": the interval excludes 0, so 5x5 is better in these runs." in line
    else:
        assert ": the interval includes 0, so these runs do not resolve the difference." in line
    assert conclusions(summary)[-1] == (
        f"{int(real)} of 1 differences in this study are real at 95 % (the interval excludes 0)" +
        ("." if real else "; 1 unresolved: with this few seeds the intervals are wide, and an "
                          "unresolved difference is not evidence that the settings are equal."))


def test_every_pair_of_settings_is_compared(tmp_path):
    from report.verdicts import REAL, UNRESOLVED, comparisons

    summary = _summary(tmp_path, [_cnn("3x3", 3, [0.89, 0.90, 0.91]), _cnn("5x5", 5, [0.92, 0.94, 0.96]),
                                  _cnn("7x7", 7, [0.90, 0.92, 0.94])])
    found = comparisons(summary)
    assert [(c.name, c.verdict) for c in found] == [("5x5 vs 7x7", REAL), ("5x5 vs 3x3", REAL),
                                                    ("7x7 vs 3x3", UNRESOLVED)]
    # 5x5 - 7x7 = 2 points on every seed: a zero-width interval at +2.00.
    assert _points(found[0].difference) == [2.0, 2.0, 2.0]


def test_a_single_seed_is_never_called_a_real_difference(tmp_path):
    from report.verdicts import conclusions

    summary = _summary(tmp_path, [_cnn("3x3", 3, [0.80]), _cnn("5x5", 5, [0.95])], seeds=1)
    lines = conclusions(summary)
    assert lines[0] == "Highest mean test accuracy: **5x5** (95.00 ± 0.00 %, n = 1 seed)."
    assert "with fewer than 2 seeds on a side there is no seed-to-seed spread" in lines[1]
    assert "excludes 0, so" not in " ".join(lines) and "is cheaper" not in " ".join(lines)
    assert lines[-1].startswith("Only 1 seed for some settings")


def test_cost_ratios_are_the_ratios_of_the_recorded_numbers(tmp_path):
    settings = [_cnn("3x3", 3, [0.90, 0.91, 0.92], params=40_000, flops=1_000_000, seconds=[2.0, 2.0, 2.0]),
                _cnn("5x5", 5, [0.905, 0.925, 0.915], params=100_000, flops=4_500_000, seconds=[5.0, 6.0, 7.0]),
                _cnn("7x7", 7, [0.80, 0.81, 0.82], params=1_000_000, flops=90_000_000, seconds=[20, 20, 20])]
    lines = _bullets(_report(tmp_path, [study("kernel_size", "kernel_size", settings)]), "Kernel size")
    assert lines[0].startswith("Highest mean test accuracy: **5x5** (91.50 ± 1.00 %")
    # 5x5 vs 3x3: per-seed differences 0.5, 1.5, -0.5 (mean 0.5, sd 1, half width 4.3027 / sqrt(3) = 2.48);
    # 100k / 40k = 2.50x params, 4.5M / 1M = 4.50x FLOPs, 6 s / 2 s = 3.00x time; 3x3 is smaller on both counts.
    assert lines[1] == ("5x5 vs 3x3: difference +0.50 points, 95 % interval [-1.98, +2.98] (paired t over 3 seeds): "
                        "the interval includes 0, so these runs do not resolve the difference. 5x5 uses 2.50x the "
                        "parameters, 4.50x the FLOPs per image and 3.00x the training time per epoch of 3x3; 3x3 "
                        "is cheaper and these runs do not show it to be worse.")
    # 5x5 vs 7x7: differences 10.5, 11.5, 9.5 -> 10.50 ± 2.48; 0.10x params, 0.05x FLOPs, 0.30x time.
    assert lines[2] == ("5x5 vs 7x7: difference +10.50 points, 95 % interval [+8.02, +12.98] (paired t over 3 "
                        "seeds): the interval excludes 0, so 5x5 is better in these runs. 5x5 uses 0.10x the "
                        "parameters, 0.05x the FLOPs per image and 0.30x the training time per epoch of 7x7.")
    # 3x3 vs 7x7: 10 points on every seed, a zero-width interval.
    assert lines[3].startswith("3x3 vs 7x7: difference +10.00 points, 95 % interval [+10.00, +10.00]")
    assert lines[4] == ("Training time per epoch ranges from 2.00 s (3x3) to 20.00 s (7x7) on the machine that "
                        "ran them.")
    assert lines[5].startswith("2 of 3 differences in this study are real at 95 %")
    assert len(lines) == 6  # three seeds each: no warning about single seeds


def test_fewer_parameters_but_more_flops_is_not_called_cheaper(tmp_path):
    from report.analysis import ratio
    from report.verdicts import conclusions

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
