"""Runs folders with KNOWN numbers: real study documents (planned by the real planner) and record
files in the format training/experiments/records.py writes, holding metrics chosen by the test.

Each setting is given as a dict: its study overrides ("label", the factor, ...) plus
    "accuracy": [test accuracy of seed 0, seed 1, ...]  (one record per value; fewer values than
                the study's seeds leave the remaining runs unrecorded),
    "params", "flops", "seconds": [s/epoch per seed], optional "confusion": one matrix for every seed,
    or "confusions": one matrix per seed, optional "epochs_run" and "best": epochs run and best epoch
    per seed (default: the epoch cap, and the last epoch run).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
KNOWN_KEYS = ("accuracy", "params", "flops", "seconds", "confusion", "confusions", "val", "epochs_run", "best")


def diagonal_confusion(accuracy: float, per_class: int = 100) -> list[list[int]]:
    """A confusion matrix whose errors all go to the next class: accuracy of every class as given."""
    right = int(round(accuracy * per_class))
    matrix = np.zeros((len(CLASSES), len(CLASSES)), dtype=int)
    for row in range(len(CLASSES)):
        matrix[row, row] = right
        matrix[row, (row + 1) % len(CLASSES)] = per_class - right
    return matrix.tolist()


def _confusion(known: dict, index: int, accuracy: float) -> list[list[int]]:
    if "confusions" in known:
        return known["confusions"][index]
    return known.get("confusion") or diagonal_confusion(accuracy)


def _metrics(canonical: dict, known: dict, index: int) -> dict:
    from training.hyperparameters import parse_hyperparameters

    _, config = parse_hyperparameters(canonical)
    config.input_shape, config.num_classes = (28, 28, 1), len(CLASSES)
    accuracy = float(known["accuracy"][index])
    val = float(known.get("val", known["accuracy"])[index])
    epochs = int(known["epochs_run"][index]) if "epochs_run" in known else int(canonical["epochs"])
    best = int(known["best"][index]) if "best" in known else epochs
    seconds = float(known["seconds"][index])
    curve = [round(val - 0.02 * (epochs - e), 4) for e in range(1, epochs + 1)]
    return {
        "model_type": config.model, "config": config.to_dict(), "params": int(known["params"]),
        "flops_per_image": int(known["flops"]), "epochs_completed": epochs, "best_epoch": best,
        "history": {"loss": [1.0 - c for c in curve], "accuracy": curve,
                    "val_loss": [1.05 - c for c in curve], "val_accuracy": curve},
        "seconds_per_epoch": [seconds] * epochs, "mean_seconds_per_epoch": seconds,
        "val_accuracy": val, "val_loss": 1.05 - val, "test_accuracy": accuracy, "test_loss": 1.0 - accuracy,
        "confusion_matrix": _confusion(known, index, accuracy), "classes": list(CLASSES),
        "num_train": 5400, "num_val": 600, "num_test": 1000, "training_seconds": seconds * epochs,
    }


def write_runs(runs: Path, studies: list[dict], channels: dict[str, str] | None = None) -> Path:
    """Write data.json, studies/<name>.json and one record per known value into `runs`."""
    from training.experiments import study_from_dict
    from training.experiments.records import make_record, record_path, write_json_atomic
    from training.experiments.runner import plan_studies, prepare_runs_folder

    runs = Path(runs)
    known = {}
    parsed = []
    for spec in studies:
        settings = []
        for setting in spec["settings"]:
            settings.append({k: v for k, v in setting.items() if k not in KNOWN_KEYS})
            known[(spec["name"], setting["label"])] = setting
        parsed.append(study_from_dict({**spec, "settings": settings}, f"{spec['name']}.json"))
    plan = plan_studies(parsed)
    prepare_runs_folder(runs, channels or {"train": str(runs / "no-data-here")}, plan)
    written = set()
    for name, document in plan.documents.items():
        for setting in document["settings"]:
            values = known[(name, setting["label"])]
            for index, rid in enumerate(setting["run_ids"][:len(values["accuracy"])]):
                if rid in written:
                    continue
                run = next(r for r in plan.runs if r.run_id == rid)
                record = make_record(rid, run.hyperparameters, _metrics(run.hyperparameters, values, index), "local")
                write_json_atomic(record_path(runs, rid), record)
                written.add(rid)
    return runs


def study(name: str, factor: str, settings: list[dict], seeds: int = 3, title: str | None = None, **extra) -> dict:
    """A study spec on a small base CNN (1 epoch), with known numbers in its settings."""
    return {"name": name, "title": title or name.replace("_", " ").capitalize(), "factor": factor,
            "seeds": seeds, "base_overrides": {"epochs": 2, "filters": 8, "dense": "32"},
            "settings": settings, **extra}
