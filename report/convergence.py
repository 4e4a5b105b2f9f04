"""Whether a run trained to convergence, and what its training cost in floating point operations.

A run has converged when both hold:
- its best validation epoch is not among the last 20 % of the epochs it ran
  (epochs run - best epoch >= 0.2 x epochs run), and
- early stopping ended it before its epoch cap (epochs run < the `epochs` hyperparameter).

Training compute is estimated from the recorded forward FLOPs per image: a training image costs a
forward and a backward pass (about 3x the forward FLOPs), a validation image one forward pass, every
epoch; the test set is scored once. Seconds are recorded too, but on a shared machine they are noisy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

LAST_SHARE = 0.2
BACKWARD_FACTOR = 3  # forward + backward of a training image, in forward passes


@dataclass(frozen=True)
class Convergence:
    epochs_run: int
    epoch_cap: int
    best_epoch: int

    @property
    def last_share_starts(self) -> int:
        """The first epoch counted in the last 20 % of the epochs run."""
        return self.epochs_run - math.ceil(LAST_SHARE * self.epochs_run) + 1

    @property
    def best_outside_last_share(self) -> bool:
        return self.epochs_run - self.best_epoch >= LAST_SHARE * self.epochs_run

    @property
    def stopped_early(self) -> bool:
        return self.epochs_run < self.epoch_cap

    @property
    def converged(self) -> bool:
        return self.best_outside_last_share and self.stopped_early


def convergence(record: dict) -> Convergence:
    return Convergence(int(record["epochs_completed"]), int(record["hyperparameters"]["epochs"]),
                       int(record["best_epoch"]))


def training_flops(record: dict) -> float:
    """Estimated floating point operations of the whole run (training, validation, one test pass)."""
    per_epoch = BACKWARD_FACTOR * int(record["num_train"]) + int(record["num_val"])
    images = per_epoch * int(record["epochs_completed"]) + int(record["num_test"])
    return float(record["flops_per_image"]) * images


def flops_text(value: float) -> str:
    """'3.21 PFLOP', '812.40 TFLOP', '1.50 GFLOP'."""
    for limit, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M")):
        if value >= limit:
            return f"{value / limit:.2f} {prefix}FLOP"
    return f"{value:.0f} FLOP"


CRITERION = (
    f"**Convergence criterion:** a run has converged when its best validation epoch is not among the last "
    f"{100 * LAST_SHARE:.0f} % of the epochs it ran (epochs run - best epoch >= {LAST_SHARE} x epochs run) and "
    "early stopping ended it before its epoch cap. The first says validation accuracy had stopped improving for "
    "a good share of the run; the second, that the cap did not cut the run short.")

COMPUTE = (
    "**Cost:** training compute is estimated from each run's recorded forward FLOPs per image: "
    f"{BACKWARD_FACTOR}x for every training image (forward and backward pass) plus 1x for every validation image, "
    "every epoch run, plus one pass over the test set. Wall-clock seconds are recorded too, but the runs share "
    "a loaded machine, so times are noisy and compute is the cost compared here.")


def check_rows(records: list[dict], memberships: dict[str, list[str]]) -> list[list[str]]:
    rows = []
    for record in records:
        check = convergence(record)
        rows.append([record["run_id"], "; ".join(memberships.get(record["run_id"], [])), str(record["seed"]),
                     f"{check.epochs_run} / {check.epoch_cap}", str(check.best_epoch),
                     f"{check.last_share_starts}-{check.epochs_run}",
                     "yes" if check.best_outside_last_share else "no",
                     "yes" if check.stopped_early else "no", "yes" if check.converged else "**no**"])
    return rows


CHECK_HEADERS = ["run", "study / setting", "seed", "epochs run / cap", "best epoch", "last 20 % of epochs",
                 "best epoch outside it", "stopped early", "converged"]


def tally(records: list[dict]) -> str:
    checks = [convergence(r) for r in records]
    met = sum(c.converged for c in checks)
    last = sum(c.best_epoch == c.epochs_run for c in checks)
    capped = sum(not c.stopped_early for c in checks)
    line = f"{met} of {len(checks)} recorded runs meet the criterion"
    if met < len(checks):
        line += (f"; {capped} ran to their epoch cap and {last} had their best validation epoch as their last "
                 "(still improving when they stopped)")
    return line + "."
