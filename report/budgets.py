"""Two training budgets of the same studies side by side: each factor's results and verdicts under
both, which verdicts change with the budget, the convergence check of the report's own budget and
the cost of each budget in FLOPs. A budget still running has settings without runs: they are shown
as pending and get no verdict."""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

from . import convergence
from .analysis import SettingSummary, StudySummary, pct_pm
from .render import Bullets, Heading, Paragraph, Table
from .statistics import Difference, difference
from .verdicts import by_seed, interval_text

NOT_SHOWN = ("seed", "verbose", "export_onnx")
PENDING = "pending"


@dataclass
class Budget:
    name: str
    runs: Path
    studies: list[StudySummary]
    records: list[dict]
    memberships: dict[str, list[str]] = field(default_factory=dict)

    def study(self, name: str) -> StudySummary | None:
        return next((s for s in self.studies if s.name == name), None)

    @property
    def planned(self) -> int:
        return len(self.memberships)


def budget_name(records: list[dict]) -> str:
    """'4 epochs', or 'up to 60 epochs, early stopping' when the runs stop early."""
    caps = "/".join(sorted({str(r["hyperparameters"]["epochs"]) for r in records}, key=int))
    stopping = {str(r["hyperparameters"].get("early_stopping_patience", "0")) for r in records} != {"0"}
    return f"up to {caps} epochs, early stopping" if stopping else f"{caps} epochs"


def _defaults() -> dict[str, str]:
    """What the entry point uses for a hyperparameter a record does not name (one added after it was made)."""
    from training.experiments.records import LATER_DEFAULTS, canonical_hyperparameters

    return {**LATER_DEFAULTS, **canonical_hyperparameters({})}


def _shared(budget: Budget) -> dict[str, str]:
    """The hyperparameters every planned setting of the budget shares (the recipe, not the factors)."""
    defaults = _defaults()
    planned = [{**defaults, **s.hyperparameters} for study in budget.studies for s in study.settings]
    keys = {k for h in planned for k in h} - set(NOT_SHOWN)
    return {k: str(planned[0].get(k, MISSING)) for k in sorted(keys)
            if len({str(h.get(k, MISSING)) for h in planned}) == 1}


MISSING = "-"


def recipe_table(primary: Budget, other: Budget) -> Table:
    mine, theirs = _shared(primary), _shared(other)
    rows = [[k, mine.get(k, MISSING), theirs.get(k, MISSING)] for k in sorted(set(mine) | set(theirs))
            if mine.get(k, MISSING) != theirs.get(k, MISSING)]
    return Table(["hyperparameter that differs", primary.name, other.name], rows,
                 caption="The two budgets' recipes, shared by every setting of their studies: every other "
                         "hyperparameter is the same in both.")


def cost_table(budgets: list[Budget]) -> Table:
    rows = []
    for budget in budgets:
        epochs = [int(r["epochs_completed"]) for r in budget.records]
        flops = [convergence.training_flops(r) for r in budget.records]
        hours = sum(float(r["training_seconds"]) for r in budget.records) / 3600
        rows.append([budget.name, f"{len(budget.records)} / {budget.planned}",
                     f"{sum(epochs) / len(epochs):.1f} ({min(epochs)}-{max(epochs)})",
                     convergence.flops_text(sum(flops) / len(flops)), convergence.flops_text(sum(flops)),
                     f"{hours:.1f}"])
    return Table(["budget", "runs recorded / planned", "epochs per run, mean (range)", "compute per run",
                  "compute, all recorded runs", "training hours (noisy)"], rows,
                 caption="What each budget cost: compute estimated from FLOPs (see Cost above); hours are the "
                         "recorded wall-clock training time of the runs, on a shared machine.")


def _setting(study: StudySummary | None, label: str) -> SettingSummary | None:
    return next((s for s in study.settings if s.label == label), None) if study else None


def _ran(setting: SettingSummary | None) -> bool:
    return setting is not None and setting.n > 0


def _accuracy(setting: SettingSummary | None) -> str:
    return f"{pct_pm(setting)} (n={setting.n})" if _ran(setting) else PENDING


def _per_run(setting: SettingSummary | None) -> tuple[str, str]:
    if not _ran(setting):
        return PENDING, PENDING
    epochs = sum(int(r["epochs_completed"]) for r in setting.records) / setting.n
    flops = sum(convergence.training_flops(r) for r in setting.records) / setting.n
    return f"{epochs:.1f}", convergence.flops_text(flops)


@dataclass
class PairVerdict:
    first: str
    second: str
    found: list[Difference | None]   # first - second, one per budget
    verdicts: list[str]

    @property
    def change(self) -> str:
        known = [v for v in self.verdicts if v not in (PENDING, "no interval")]
        if len(known) < len(self.verdicts):
            return "not yet known"
        return "**yes**" if len(set(known)) > 1 else "no"


def _verdict(first: str, second: str, found: Difference | None, ran: bool) -> str:
    if not ran:
        return PENDING
    if found is None:
        return "no interval"
    if not found.real:
        return "unresolved"
    return f"{first} better" if found.estimate > 0 else f"{second} better"


def _order(labels: list[str], studies: list[StudySummary | None]) -> list[str]:
    """Labels by the mean test accuracy of the first budget that ran them all, else as listed."""
    for study in studies:
        settings = [_setting(study, label) for label in labels]
        if all(_ran(s) for s in settings):
            return [s.label for s in sorted(settings, key=lambda s: (-s.mean("test_accuracy"), s.params))]
    return labels


def pair_verdicts(labels: list[str], studies: list[StudySummary | None]) -> list[PairVerdict]:
    out = []
    for first, second in combinations(_order(labels, studies), 2):
        found, verdicts = [], []
        for study in studies:
            a, b = _setting(study, first), _setting(study, second)
            ran = _ran(a) and _ran(b)
            found.append(difference(by_seed(a), by_seed(b)) if ran else None)
            verdicts.append(_verdict(first, second, found[-1], ran))
        out.append(PairVerdict(first, second, found, verdicts))
    return out


def _labels(studies: list[StudySummary | None]) -> list[str]:
    labels = []
    for study in studies:
        labels += [s.label for s in (study.settings if study else []) if s.label not in labels]
    return labels


def factor_blocks(name: str, budgets: list[Budget]) -> tuple[list, list[str]]:
    """The side-by-side tables of one study, and a sentence for each verdict that changes."""
    studies = [b.study(name) for b in budgets]
    title = next(s.title for s in studies if s)
    labels = _labels(studies)
    rows = [[label] + [_accuracy(_setting(s, label)) for s in studies]
            + [x for s in studies for x in _per_run(_setting(s, label))] for label in labels]
    headers = (["setting"] + [f"test acc. % ({b.name})" for b in budgets]
               + [f"{what} ({b.name})" for b in budgets for what in ("epochs run", "compute per run")])
    pairs = pair_verdicts(labels, studies)
    pair_rows = [[f"{p.first} - {p.second}"] + [x for f, v in zip(p.found, p.verdicts)
                                                for x in (interval_text(f) if v != PENDING else PENDING, v)]
                 + [p.change] for p in pairs]
    pair_headers = (["difference"] + [x for b in budgets for x in (f"points, 95 % interval ({b.name})",
                                                                   f"verdict ({b.name})")]
                    + ["changes with the budget"])
    changed = [f"{title}, {p.first} vs {p.second}: " + "; ".join(f"{b.name}: {v}" for b, v in zip(budgets, p.verdicts))
               for p in pairs if p.change == "**yes**"]
    best = [max((x for x in s.settings if x.n), key=lambda x: (x.mean("test_accuracy"), -x.params)).label
            if s and any(x.n for x in s.settings) else PENDING for s in studies]
    blocks = [Heading(title, 3),
              Paragraph("Highest mean test accuracy: " + "; ".join(f"{b.name}: {label}" for b, label in
                                                                   zip(budgets, best)) + "."),
              Table(headers, rows, caption=f"{title}: test accuracy (mean ± 1 sample std over n seeds), epochs "
                                           "run and compute per run, under each budget."),
              Table(pair_headers, pair_rows, caption=f"{title}: every pair's difference of mean test accuracy "
                                                     "with its 95 % interval under each budget; a verdict is "
                                                     "given only where the interval excludes 0.")]
    return blocks, changed


def budgets_section(budgets: list[Budget]) -> list:
    primary, other = budgets
    blocks = [Heading("The two budgets side by side"),
              Paragraph(f"This report is about the budget **{primary.name}** (`{primary.runs.name}`) and sets "
                        f"it beside **{other.name}** (`{other.runs.name}`): the same studies, settings and seeds, "
                        "trained with different budgets. A verdict that changes with the budget describes how "
                        "fast a model learns more than how good it ends up."),
              recipe_table(primary, other),
              Paragraph(convergence.CRITERION),
              Bullets([f"{b.name}: {convergence.tally(b.records)}" for b in budgets]),
              Table(convergence.CHECK_HEADERS, convergence.check_rows(primary.records, primary.memberships),
                    caption=f"The convergence check of every recorded run of {primary.name}."),
              Paragraph(convergence.COMPUTE),
              cost_table(budgets)]
    names = [s.name for b in budgets for s in b.studies]
    factors, changed = [], []
    for name in dict.fromkeys(names):
        section, changes = factor_blocks(name, budgets)
        factors += section
        changed += changes
    pending = primary.planned - len(primary.records)
    summary = (f"{len(changed)} verdict(s) change with the budget." if changed
               else "No verdict with runs under both budgets changes with the budget.")
    if pending:
        summary += (f" {pending} of {primary.planned} planned runs of {primary.name} are not recorded yet: their "
                    "settings are pending and their verdicts are not yet known.")
    blocks += [Heading("Verdicts that change with the budget", 3), Paragraph(summary)]
    if changed:
        blocks.append(Bullets(changed))
    return blocks + factors
