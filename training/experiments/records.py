"""Run records: one JSON file per (config, seed), written atomically, named by what was trained.

A runs folder holds everything a study leaves behind:

    <runs>/data.json              the channels every run in the folder trained on
    <runs>/studies/<name>.json    each study as run: factor, adjustments, settings and their run ids
    <runs>/records/<run_id>.json  one record per (config, seed): identity + the run's metrics.json
    <runs>/models/<run_id>/       model_dir of the best run (by validation accuracy) of each study

A run id is `<model>-<hash of the hyperparameters that affect the result>-seed<seed>`, so identical
configurations in different studies (the base CNN appears in each) train once and share a record.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from convlab.atomic import atomic_write

# Hyperparameters that change how a run is reported or exported, not what it learns.
NON_RESULT_KEYS = ("verbose", "export_onnx", "class_names")  # names do not change a result
# Fields every record carries (run identity first, then what training reported in metrics.json).
IDENTITY_FIELDS = ("run_id", "config_id", "seed", "hyperparameters", "backend")
METRIC_FIELDS = (
    "model_type", "config", "params", "flops_per_image", "epochs_completed", "best_epoch", "history",
    "seconds_per_epoch", "mean_seconds_per_epoch", "val_accuracy", "val_loss", "test_accuracy", "test_loss",
    "confusion_matrix", "classes", "num_train", "num_val", "num_test", "training_seconds",
)
# Hyperparameters added after records existed: left out of a run's identity at their default, so
# earlier records keep their run ids.
LATER_DEFAULTS = {"precision": "float32", "early_stopping_fraction": "0.0", "image_size": "", "min_steps": "500"}
HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")
RECORD_FIELDS = IDENTITY_FIELDS + METRIC_FIELDS


class RecordError(ValueError):
    """A record file that is missing, unreadable or lacks a field; the message names the file."""


def canonical_hyperparameters(hyperparameters: dict) -> dict[str, str]:
    """Every hyperparameter the entry point would use, as the strings SageMaker passes, defaults filled in.

    Two spellings of one configuration ("dense": "128" and [128], 3 and "3") give the same mapping.
    """
    from ..hyperparameters import parse_hyperparameters

    params, config = parse_hyperparameters(hyperparameters)
    out = config.to_hyperparameters()
    for name, value in params.to_dict().items():
        if isinstance(value, bool):
            out[name] = "true" if value else "false"
        else:
            out[name] = str(value)
    for name, default in LATER_DEFAULTS.items():
        if out.get(name) == default:
            del out[name]
    return dict(sorted(out.items()))


def config_id(canonical: dict[str, str]) -> str:
    """A short hash of the hyperparameters that affect the result, the seed left out."""
    identity = {k: v for k, v in canonical.items() if k not in NON_RESULT_KEYS and k != "seed"}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return f"{canonical.get('model', 'model')}-{digest[:10]}"


def run_id(canonical: dict[str, str]) -> str:
    return f"{config_id(canonical)}-seed{canonical['seed']}"


def make_record(run_id_: str, canonical: dict[str, str], metrics: dict, backend: str, **extra) -> dict:
    """The record of one finished run: its identity, then every field of metrics.json."""
    record = {k: v for k, v in metrics.items() if k != "hyperparameters"}
    record.update({
        "run_id": run_id_,
        "config_id": config_id(canonical),
        "seed": int(canonical["seed"]),
        "hyperparameters": dict(canonical),
        "backend": backend,
    })
    record.update(extra)
    check_record(record, f"run {run_id_}")
    return record


def check_record(record: dict, source: str) -> dict:
    missing = [name for name in RECORD_FIELDS if name not in record]
    if missing:
        raise RecordError(f"{source}: record lacks field(s) {missing}")
    history_missing = [k for k in HISTORY_KEYS if k not in record["history"]]
    if history_missing:
        raise RecordError(f"{source}: record 'history' lacks {history_missing}")
    return record


def write_json_atomic(path: Path, document) -> None:
    """Write JSON beside `path`, then rename: a reader never sees half a file."""
    with atomic_write(path, "w") as stream:
        json.dump(document, stream, indent=2, sort_keys=True)
        stream.write("\n")


def records_dir(runs: Path) -> Path:
    return Path(runs) / "records"


def record_path(runs: Path, run_id_: str) -> Path:
    return records_dir(runs) / f"{run_id_}.json"


def read_record(path: Path) -> dict:
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecordError(f"{path}: no such record") from None
    except json.JSONDecodeError as exc:
        raise RecordError(f"{path}: not valid JSON ({exc})") from None
    return check_record(record, str(path))


def load_records(runs: Path) -> dict[str, dict]:
    """Every record in a runs folder, by run id."""
    return {p.stem: read_record(p) for p in sorted(records_dir(runs).glob("*.json"))}
