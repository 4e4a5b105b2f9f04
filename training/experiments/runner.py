"""Plan the runs of one or more studies and execute them locally, one after another, resumably.

Every run goes through the training entry point (`training.train.run_training`), exactly as a
SageMaker job would; its metrics.json becomes the run's record. A record that exists is never
trained again, so an interrupted study picks up where it stopped.
"""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .records import (
    RecordError, canonical_hyperparameters, config_id, load_records, make_record, record_path, run_id,
    write_json_atomic,
)
from .spec import Study

log = logging.getLogger(__name__)

# What every run of a study passes besides its config: quiet Keras (the study has its own
# progress bar) and no ONNX export (a study compares training, it does not ship models).
RUN_DEFAULTS = {"verbose": 0, "export_onnx": False}


class StudyRunError(RuntimeError):
    """A run of a study failed; the message names the study, the setting and the seed."""


@dataclass
class PlannedRun:
    run_id: str
    hyperparameters: dict[str, str]
    members: list[tuple[str, str]] = field(default_factory=list)  # (study, setting label)

    def describe(self) -> str:
        where = ", ".join(f"{study}/{label}" for study, label in self.members)
        return f"{self.run_id} ({where}, seed {self.hyperparameters['seed']})"


@dataclass
class StudyPlan:
    runs: list[PlannedRun]
    documents: dict[str, dict]  # study name -> what runs/studies/<name>.json holds


def plan_studies(studies: list[Study]) -> StudyPlan:
    """Every (setting, seed) of every study, deduplicated: equal configs in two studies run once."""
    runs: dict[str, PlannedRun] = {}
    documents = {}
    for study in studies:
        settings = []
        for setting in study.settings:
            run_ids = []
            for seed in study.seeds:
                canonical = canonical_hyperparameters({**study.hyperparameters(setting, seed), **RUN_DEFAULTS})
                rid = run_id(canonical)
                runs.setdefault(rid, PlannedRun(rid, canonical)).members.append((study.name, setting.label))
                run_ids.append(rid)
            shared = {k: v for k, v in runs[run_ids[0]].hyperparameters.items() if k != "seed"}
            settings.append({"label": setting.label, "value": setting.value(study.factor),
                             "overrides": dict(setting.overrides), "config_id": config_id(shared),
                             "hyperparameters": shared, "run_ids": run_ids})
        documents[study.name] = {
            "name": study.name, "title": study.title, "question": study.question, "factor": study.factor,
            "adjustments": dict(study.adjustments), "seeds": list(study.seeds), "source": study.source,
            "base": dict(study.base), "settings": settings,
        }
    return StudyPlan(list(runs.values()), documents)


def prepare_runs_folder(runs: Path, channels: dict[str, str], plan: StudyPlan) -> None:
    """Write data.json (refusing a folder whose runs used other data) and the study documents."""
    runs = Path(runs)
    manifest = runs / "data.json"
    wanted = {"channels": {name: _absolute(uri) for name, uri in sorted(channels.items())}}
    if manifest.exists():
        existing = json.loads(manifest.read_text(encoding="utf-8"))
        if existing != wanted:
            raise StudyRunError(f"{manifest}: this runs folder holds runs trained on {existing['channels']}, "
                                f"not on {wanted['channels']}; use another runs folder for other data")
    else:
        write_json_atomic(manifest, wanted)
    for name, document in plan.documents.items():
        write_json_atomic(runs / "studies" / f"{name}.json", document)


def _absolute(location: str) -> str:
    """Local channel folders as absolute paths (a rerun from another folder finds the same data)."""
    return location if "://" in str(location) else str(Path(location).resolve())


def pending_runs(runs: Path, plan: StudyPlan) -> tuple[list[PlannedRun], list[PlannedRun]]:
    """(runs still to train, runs whose record exists)."""
    todo, done = [], []
    for run in plan.runs:
        (done if record_path(runs, run.run_id).exists() else todo).append(run)
    return todo, done


def run_local(studies: list[Study], channels: dict[str, str], runs: str | Path, progress: bool = True,
              workers: int = 1) -> dict:
    """Train every missing run of `studies`, one after another in this process or, with `workers` > 1,
    in that many processes pinned one per core; return a summary."""
    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    runs = Path(runs)
    plan = plan_studies(studies)
    prepare_runs_folder(runs, channels, plan)
    todo, done = pending_runs(runs, plan)
    log.info("%d runs planned: %d to train, %d already recorded in %s",
             len(plan.runs), len(todo), len(done), runs / "records")
    desc = ", ".join(s.name for s in studies)
    with logging_redirect_tqdm():
        if workers > 1 and len(todo) > 1:
            from .parallel import train_parallel

            with tqdm(total=len(todo), desc=desc, unit="run", disable=not progress) as bar:
                failure = train_parallel(todo, channels, runs, min(workers, len(todo)), bar,
                                         train_one, prune_models)
            if failure:
                raise StudyRunError(failure)
        else:
            _train_all(todo, channels, runs, tqdm(todo, desc=desc, unit="run", disable=not progress))
    return {"planned": len(plan.runs), "trained": [r.run_id for r in todo], "skipped": [r.run_id for r in done]}


def _train_all(todo: list[PlannedRun], channels: dict[str, str], runs: Path, bar) -> None:
    for run in bar:
        bar.set_postfix_str(run.run_id)
        metrics = train_one(run, channels, runs)
        log.info("recorded %s: test accuracy %.4f", run.describe(), metrics["test_accuracy"])
        prune_models(runs)


def train_one(run: PlannedRun, channels: dict[str, str], runs: Path) -> dict:
    """Train one planned run through the entry point and write its record; return its metrics."""
    from ..train import run_training

    model_dir = runs / "models" / run.run_id
    shutil.rmtree(model_dir, ignore_errors=True)  # what an interrupted run left
    try:
        metrics = run_training(dict(run.hyperparameters), channels, str(model_dir))
    except Exception as exc:
        raise StudyRunError(f"run {run.describe()} failed: {exc}") from exc
    finally:
        _release_keras_state()
    write_json_atomic(record_path(runs, run.run_id), make_record(run.run_id, run.hyperparameters, metrics, "local"))
    return metrics


def _release_keras_state() -> None:
    import keras

    keras.backend.clear_session()


def best_run_ids(runs: Path) -> dict[str, str]:
    """The best recorded run of each study in the folder: highest validation accuracy (test never used)."""
    runs = Path(runs)
    records = load_records(runs)
    best = {}
    for document_path in sorted((runs / "studies").glob("*.json")):
        document = json.loads(document_path.read_text(encoding="utf-8"))
        candidates = [records[rid] for s in document["settings"] for rid in s["run_ids"] if rid in records]
        if candidates:
            winner = max(candidates, key=lambda r: (r["val_accuracy"], -r["val_loss"], r["run_id"]))
            best[document["name"]] = winner["run_id"]
    return best


def prune_models(runs: Path) -> list[str]:
    """Delete the model_dirs of runs that are not the best of any study; return the ones kept."""
    runs = Path(runs)
    try:
        keep = set(best_run_ids(runs).values())
    except RecordError as exc:
        log.warning("not pruning model dirs: %s", exc)
        return []
    models = runs / "models"
    for model_dir in sorted(models.glob("*")) if models.exists() else []:
        # A model dir without a record belongs to a run still training (in another worker).
        if model_dir.is_dir() and model_dir.name not in keep and record_path(runs, model_dir.name).exists():
            shutil.rmtree(model_dir, ignore_errors=True)
    return sorted(keep)
