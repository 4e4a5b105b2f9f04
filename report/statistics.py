"""The difference of two settings' mean test accuracies with a 95 % confidence interval.

Runs of two settings with the same seed share their data split (train, validation and test images)
and the order in which training visits the images (training/train.py splits with the seed,
training/pipeline.py shuffles each epoch with (seed, epoch)), so the seeds pair the runs: the
interval is a paired t interval of the per-seed differences over the seeds both settings ran. Two
settings that share fewer than two seeds but each have two runs or more get Welch's t interval.
A difference is called real only when its interval excludes 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

CONFIDENCE = 0.95
PAIRED = "paired t"
WELCH = "Welch t"


def _beta_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for numerator in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                          -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function, for 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom (df > 0, not necessarily whole)."""
    tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t value below which Student's t with `df` degrees of freedom falls with probability `p`."""
    if not 0.0 < p < 1.0 or not df > 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2.0
    for _ in range(200):
        middle = 0.5 * (low + high)
        if t_cdf(middle, df) < p:
            low = middle
        else:
            high = middle
        if high - low <= 1e-13 * max(1.0, high):
            break
    return 0.5 * (low + high)


@dataclass(frozen=True)
class Difference:
    """mean(a) - mean(b) as estimated by `method` over `n` values, and its 95 % interval."""
    estimate: float
    low: float
    high: float
    method: str       # PAIRED or WELCH
    n: str            # "3 seeds" (paired) or "3 + 2 runs" (Welch)
    df: float

    @property
    def real(self) -> bool:
        return self.low > 0.0 or self.high < 0.0


def _mean_var(values: list[float]) -> tuple[float, float]:
    mean = math.fsum(values) / len(values)
    return mean, math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)


def paired_interval(a: list[float], b: list[float]) -> Difference:
    """Paired t interval of mean(a - b); a[i] and b[i] come from runs with the same seed."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"a paired interval needs two equal-length lists of 2 values or more, got {len(a)} "
                         f"and {len(b)}")
    differences = [x - y for x, y in zip(a, b)]
    mean, variance = _mean_var(differences)
    df = len(differences) - 1
    half = t_quantile(0.5 + CONFIDENCE / 2, df) * math.sqrt(variance / len(differences))
    return Difference(mean, mean - half, mean + half, PAIRED, f"{len(differences)} seeds", float(df))


def welch_interval(a: list[float], b: list[float]) -> Difference:
    """Welch's t interval of mean(a) - mean(b) for independent samples of 2 values or more each."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"Welch's interval needs 2 values or more on each side, got {len(a)} and {len(b)}")
    (mean_a, var_a), (mean_b, var_b) = _mean_var(a), _mean_var(b)
    share_a, share_b = var_a / len(a), var_b / len(b)
    error = share_a + share_b
    estimate = mean_a - mean_b
    if error == 0.0:
        df = float(len(a) + len(b) - 2)
        return Difference(estimate, estimate, estimate, WELCH, f"{len(a)} + {len(b)} runs", df)
    df = error ** 2 / (share_a ** 2 / (len(a) - 1) + share_b ** 2 / (len(b) - 1))
    half = t_quantile(0.5 + CONFIDENCE / 2, df) * math.sqrt(error)
    return Difference(estimate, estimate - half, estimate + half, WELCH, f"{len(a)} + {len(b)} runs", df)


def difference(a: dict[int, float], b: dict[int, float]) -> Difference | None:
    """mean(a) - mean(b) for values keyed by seed: paired over the shared seeds when there are 2 or
    more, else Welch's when each side has 2 or more, else None (no interval can be computed)."""
    shared = sorted(set(a) & set(b))
    if len(shared) >= 2:
        return paired_interval([a[s] for s in shared], [b[s] for s in shared])
    if len(a) >= 2 and len(b) >= 2:
        return welch_interval(list(a.values()), list(b.values()))
    return None
