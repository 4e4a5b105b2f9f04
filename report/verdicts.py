"""Verdicts on pairs of settings: the difference of mean test accuracies with its 95 % interval
(report/statistics.py), called real only when the interval excludes 0, and the sentences saying so."""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

from training.metrics import chance_accuracy, near_chance

from .analysis import SettingSummary, StudySummary, pct_pm, ratio
from .statistics import CONFIDENCE, Difference, difference, t_quantile

REAL, UNRESOLVED, PENDING = "real", "unresolved", "pending"
KEY = "test_accuracy"


@dataclass
class Comparison:
    higher: SettingSummary   # the setting with the higher mean (ties: fewer parameters)
    lower: SettingSummary
    difference: Difference | None   # higher - lower, in accuracy (0-1) units

    @property
    def verdict(self) -> str:
        if not self.higher.n or not self.lower.n:
            return PENDING
        return REAL if self.difference is not None and self.difference.real else UNRESOLVED

    @property
    def gap(self) -> float:
        """Difference of the two settings' means over all their runs, in points."""
        return 100 * (self.higher.mean(KEY) - self.lower.mean(KEY))

    @property
    def name(self) -> str:
        return f"{self.higher.label} vs {self.lower.label}"


def by_seed(setting: SettingSummary, key: str = KEY) -> dict[int, float]:
    return {int(r["seed"]): float(r[key]) for r in setting.records}


def _rank(setting: SettingSummary) -> tuple:
    return (setting.mean(KEY), -setting.params) if setting.n else (float("-inf"), 0)


def compare(a: SettingSummary, b: SettingSummary) -> Comparison:
    higher, lower = (a, b) if _rank(a) >= _rank(b) else (b, a)
    measured = difference(by_seed(higher), by_seed(lower)) if higher.n and lower.n else None
    return Comparison(higher, lower, measured)


def comparisons(study: StudySummary) -> list[Comparison]:
    """Every pair of the study's settings, in the order of the settings' means (highest first)."""
    ranked = sorted(study.settings, key=lambda s: tuple(-x for x in _rank(s)))
    return [compare(a, b) for a, b in combinations(ranked, 2)]


def points(value: float) -> str:
    return f"{100 * value:+.2f}"


def interval_text(found: Difference | None) -> str:
    """'+1.20 [+0.35, +2.05] (paired t, 3 seeds)', or why there is none."""
    if found is None:
        return "no interval (fewer than 2 runs on a side)"
    return (f"{points(found.estimate)} [{points(found.low)}, {points(found.high)}] "
            f"({found.method}, {found.n})")


def verdict_sentence(comparison: Comparison) -> str:
    name, found = comparison.name, comparison.difference
    if found is None:
        return (f"{name}: {comparison.gap:.2f} points apart, but with fewer than 2 seeds on a side there is no "
                "seed-to-seed spread to build an interval from, so the difference is not called real.")
    head = (f"{name}: difference {points(found.estimate)} points, 95 % interval [{points(found.low)}, "
            f"{points(found.high)}] ({found.method} over {found.n})")
    if found.real:
        return head + f": the interval excludes 0, so {comparison.higher.label} is better in these runs."
    return head + ": the interval includes 0, so these runs do not resolve the difference."


def cost_sentence(comparison: Comparison) -> str:
    best, other = comparison.higher, comparison.lower
    line = (f"{best.label} uses {ratio(best.params, other.params)} the parameters, {ratio(best.flops, other.flops)} "
            f"the FLOPs per image and {ratio(best.seconds_per_epoch, other.seconds_per_epoch)} the training time "
            f"per epoch of {other.label}")
    cheaper = (other.params <= best.params and other.flops <= best.flops
               and (other.params, other.flops) != (best.params, best.flops))
    if cheaper and comparison.verdict == UNRESOLVED and comparison.difference is not None:
        line += f"; {other.label} is cheaper and these runs do not show it to be worse"
    return line + "."


def critical_t(pairs: int) -> float:
    """The t value a paired interval over `pairs` seeds multiplies its standard error by."""
    return t_quantile(0.5 + CONFIDENCE / 2, pairs - 1)


def tally(found: list[Comparison]) -> str:
    """How many of the differences the runs resolve, said plainly."""
    measured = [c for c in found if c.difference is not None]
    real = [c for c in measured if c.difference.real]
    line = f"{len(real)} of {len(found)} differences in this study are real at 95 % (the interval excludes 0)"
    if len(real) < len(measured):
        line += (f"; {len(measured) - len(real)} unresolved: with this few seeds the intervals are wide, and an "
                 "unresolved difference is not evidence that the settings are equal")
    return line + "."


def _at_chance(setting: SettingSummary) -> bool:
    return all(near_chance(r["test_accuracy"], r["confusion_matrix"]) for r in setting.records)


def conclusions(study: StudySummary) -> list[str]:
    """Statements the records support: the ranking, each pair's difference and interval, costs."""
    ran = [s for s in study.settings if s.n]
    if len(ran) < 2:
        return ["Fewer than two settings have records, so nothing can be compared yet."]
    if all(_at_chance(s) for s in ran):
        chance = chance_accuracy(ran[0].records[0]["confusion_matrix"])
        means = ", ".join(f"{s.label} {pct_pm(s)} %" for s in ran)
        return [f"Every setting is at or near chance ({100 * chance:.2f} %, what always answering the most common "
                f"class scores): {means}. These runs learned too little to rank the settings; train longer "
                "(more epochs), with a smaller batch, or on more data."]
    best = study.best()
    lines = [f"Highest mean test accuracy: **{best.label}** ({pct_pm(best)} %, n = {best.n} "
             f"seed{'s' if best.n != 1 else ''})."]
    found = [c for c in comparisons(study) if c.verdict != PENDING]
    lines += [verdict_sentence(c) + " " + cost_sentence(c) for c in found]
    fastest = min(ran, key=lambda s: (s.seconds_per_epoch, s.label))
    slowest = max(ran, key=lambda s: (s.seconds_per_epoch, s.label))
    lines.append(f"Training time per epoch ranges from {fastest.seconds_per_epoch:.2f} s ({fastest.label}) to "
                 f"{slowest.seconds_per_epoch:.2f} s ({slowest.label}) on the machine that ran them.")
    lines.append(tally(found))
    fewest = min(s.n for s in ran)
    if fewest == 1:
        lines.append("Only 1 seed for some settings: their spread cannot be estimated, so no difference "
                     "involving them is called real.")
    return lines
