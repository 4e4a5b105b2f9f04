"""Numbers for the report, every one computed from the run records: per-setting mean and spread
over seeds, counts, ratios and confusions (the verdicts on pairs are in report/verdicts.py)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class SettingSummary:
    label: str
    value: object
    config_id: str
    run_ids: list[str]          # planned
    records: list[dict]         # recorded, in seed order
    hyperparameters: dict

    @property
    def n(self) -> int:
        return len(self.records)

    def values(self, key: str) -> np.ndarray:
        return np.array([float(r[key]) for r in self.records], dtype=float)

    def mean(self, key: str) -> float:
        return float(self.values(key).mean()) if self.records else math.nan

    def std(self, key: str) -> float:
        """Sample standard deviation over seeds (0 with a single seed)."""
        return float(self.values(key).std(ddof=1)) if self.n > 1 else 0.0

    @property
    def params(self) -> int:
        return int(self.records[0]["params"]) if self.records else 0

    @property
    def flops(self) -> int:
        return int(self.records[0]["flops_per_image"]) if self.records else 0

    @property
    def seconds_per_epoch(self) -> float:
        return self.mean("mean_seconds_per_epoch")

    @property
    def config(self) -> dict:
        return self.records[0]["config"] if self.records else {}


@dataclass
class StudySummary:
    name: str
    title: str
    question: str
    factor: str
    adjustments: dict
    seeds: list[int]
    settings: list[SettingSummary] = field(default_factory=list)

    @property
    def planned(self) -> int:
        return sum(len(s.run_ids) for s in self.settings)

    @property
    def recorded(self) -> int:
        return sum(s.n for s in self.settings)

    def best(self, key: str = "test_accuracy") -> SettingSummary:
        return max((s for s in self.settings if s.n), key=lambda s: (s.mean(key), -s.params))


def load_study_documents(runs: Path) -> list[dict]:
    from training.experiments.spec import builtin_names

    documents = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((Path(runs) / "studies").glob("*.json"))]
    order = {name: i for i, name in enumerate(builtin_names())}
    return sorted(documents, key=lambda d: (order.get(d["name"], len(order)), d["name"]))


def summarize(document: dict, records: dict[str, dict]) -> StudySummary:
    summary = StudySummary(document["name"], document["title"], document.get("question", ""), document["factor"],
                           document.get("adjustments", {}), document["seeds"])
    for setting in document["settings"]:
        recorded = sorted((records[r] for r in setting["run_ids"] if r in records), key=lambda r: r["seed"])
        summary.settings.append(SettingSummary(setting["label"], setting["value"], setting["config_id"],
                                               list(setting["run_ids"]), recorded, setting["hyperparameters"]))
    return summary


def pct(value: float) -> str:
    return f"{100 * value:.2f}"


def pct_pm(setting: SettingSummary, key: str = "test_accuracy") -> str:
    """'91.23 ± 0.15' (percent, sample std over seeds)."""
    if not setting.n:
        return "not run"
    return f"{pct(setting.mean(key))} ± {pct(setting.std(key))}"


def count(value: float) -> str:
    """12,345 / 1.2M / 3.4G: parameter and FLOP counts."""
    value = float(value)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.2f}{suffix}"
    return f"{value:.0f}"


def ratio(numerator: float, denominator: float) -> str:
    """'1.80x', '0.25x', '12.5x': how many times `denominator` `numerator` is."""
    if denominator <= 0:
        return "n/a"
    value = numerator / denominator
    return f"{value:.2f}x" if value < 10 else f"{value:,.1f}x"


def per_class_accuracy(setting: SettingSummary) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std over seeds of each class's recall (diagonal / row sum of the confusion matrix)."""
    rows = []
    for record in setting.records:
        matrix = np.array(record["confusion_matrix"], dtype=float)
        rows.append(np.diag(matrix) / np.maximum(matrix.sum(axis=1), 1))
    rows = np.array(rows)
    return rows.mean(axis=0), (rows.std(axis=0, ddof=1) if len(rows) > 1 else np.zeros(rows.shape[1]))


def pooled_confusion(setting: SettingSummary) -> np.ndarray:
    return np.sum([np.array(r["confusion_matrix"], dtype=int) for r in setting.records], axis=0)


def top_confusions(setting: SettingSummary, classes: list[str], limit: int = 3) -> list[str]:
    """The `limit` largest off-diagonal cells of the confusion matrix pooled over seeds (ties: the
    earlier true class, then the earlier predicted class), as sentences."""
    matrix = pooled_confusion(setting).astype(float)
    totals = matrix.sum(axis=1)
    np.fill_diagonal(matrix, 0)
    order = np.argsort(-matrix, axis=None, kind="stable")[:limit]
    pairs = []
    for flat in order:
        true, predicted = divmod(int(flat), matrix.shape[1])
        times = int(matrix[true, predicted])
        if times > 0:
            pairs.append(f"{classes[true]} taken for {classes[predicted]}: {times} test images over {setting.n} "
                         f"seed{'s' if setting.n != 1 else ''} ({times / setting.n:.1f} per seed, "
                         f"{100 * times / max(totals[true], 1):.1f} % of {classes[true]})")
    return pairs
