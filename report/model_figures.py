"""Figures of a study's base CNN, kept beside the run records so they can be committed without the model.

    <runs>/model_figures/model_figures.json   which run the figures show, and the numbers their captions state
    <runs>/model_figures/*.png                 first-layer filters, feature maps of one test image per class,
                                               Grad-CAM, the most confident mistakes

They are drawn from the base CNN's kept model_dir (<runs>/models/<run_id>, not committed; without one,
the best kept CNN's) the first time a report is built after that model exists, and again when a better
run has been kept since. A report built where the model is absent (a fresh clone) uses the figures as
they are.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from training.experiments.records import write_json_atomic

from . import inside
from .new_photos import new_photos

log = logging.getLogger(__name__)

FOLDER = "model_figures"
MANIFEST = "model_figures.json"
FILES = {"filters": "cnn_filters.png", "feature_maps": "cnn_feature_maps.png", "grad_cam": "cnn_grad_cam.png",
         "misclassified": "misclassified.png", "new_photos": "new_photos.png"}


def _kept(runs: Path, run_id: str) -> bool:
    return (runs / "models" / run_id / "model.keras").is_file()


BASE = "the base CNN's recorded run with the highest validation accuracy whose model was kept"
OTHER = ("the recorded CNN run with the highest validation accuracy whose model was kept (no run of the base "
         "CNN was kept)")


def base_cnn_run(runs: Path, studies: list, records: dict[str, dict]) -> tuple[dict | None, str]:
    """(the run the figures show, which run that is): the recorded run of the base CNN (the CNN setting
    of the study whose factor is `model`) with the highest validation accuracy whose model_dir is kept;
    without one, the kept CNN run with the highest validation accuracy."""
    def best(run_ids) -> dict | None:
        kept = [records[rid] for rid in dict.fromkeys(run_ids) if rid in records and _kept(runs, rid)]
        return max(kept, key=lambda r: (r["val_accuracy"], -r["val_loss"], r["run_id"])) if kept else None

    base = best(rid for study in studies if study.factor == "model" for setting in study.settings
                if setting.hyperparameters.get("model") == "cnn" for rid in setting.run_ids)
    if base:
        return base, BASE
    return best(rid for rid, record in records.items() if record["model_type"] == "cnn"), OTHER


def read_manifest(runs: Path) -> dict | None:
    """The manifest of <runs>/model_figures when it and every figure it names are there."""
    folder = Path(runs) / FOLDER
    path = folder / MANIFEST
    if not path.is_file():
        return None
    manifest = json.loads(path.read_text(encoding="utf-8"))
    return manifest if all((folder / name).is_file() for name in manifest["figures"].values()) else None


def write_model_figures(runs: Path, record: dict, channels: dict[str, str], shown: str = BASE) -> dict:
    """Draw every model figure of `record`'s kept model into <runs>/model_figures; return the manifest."""
    runs = Path(runs)
    folder = runs / FOLDER
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    model = inside.load_model(runs / "models" / record["run_id"])
    images, labels, classes = inside.run_test_set(record, channels)
    probabilities = inside.predict(model, images)
    predicted = probabilities.argmax(axis=1)
    picks = inside.one_per_class(labels, probabilities, classes)
    names = [classes[labels[i]] for i in picks]
    inside.first_layer_filters(model, folder / FILES["filters"])
    _, sizes = inside.class_feature_maps(model, images, picks, names, folder / FILES["feature_maps"])
    heat, cam_classes = inside.grad_cam(model, images[picks])
    titles = [f"{classes[labels[i]]}\n" + (f"p = {probabilities[i, c]:.2f}" if c == labels[i] else
                                           f"taken for {classes[c]} ({probabilities[i, c]:.2f})")
              for i, c in zip(picks, cam_classes)]
    layer = inside.block_ends(model)[-1]
    inside.grad_cam_figure(images[picks], heat, titles, layer, folder / FILES["grad_cam"])
    _, mistakes = inside.misclassified(images, labels, probabilities, classes, folder / FILES["misclassified"])
    photos = new_photos(runs / "models" / record["run_id"], images, labels, classes, folder / FILES["new_photos"])
    manifest = {
        "run_id": record["run_id"], "seed": int(record["seed"]), "model_type": record["model_type"], "shown": shown,
        "test_images": int(len(labels)), "rescored_accuracy": round(float((predicted == labels).mean()), 6),
        "mistakes": int(mistakes), "block_sizes": sizes, "grad_cam_layer": layer,
        "per_class_images": [{"class": name, "test_index": int(i)} for name, i in zip(names, picks)],
        "new_photos": photos, "figures": dict(FILES),
    }
    write_json_atomic(folder / MANIFEST, manifest)
    log.info("model figures of %s written to %s", record["run_id"], folder)
    return manifest


def ensure_model_figures(runs: Path, studies: list, records: dict[str, dict], channels: dict[str, str],
                         redraw: bool = False) -> dict | None:
    """The model figures' manifest, first (re)drawn when the base CNN's kept model is there and the
    figures are missing, show another run, or `redraw`; None when there are neither figures nor model."""
    runs = Path(runs)
    record, shown = base_cnn_run(runs, studies, records)
    manifest = read_manifest(runs)
    if record and (redraw or manifest is None or manifest["run_id"] != record["run_id"]):
        manifest = write_model_figures(runs, record, channels, shown)
    return manifest


def copy_figures(runs: Path, manifest: dict, folder: Path) -> dict[str, str]:
    """Copy the model figures into the report's figures/; return what -> path relative to the report."""
    out = {}
    for what, name in manifest["figures"].items():
        target = Path(folder) / "figures" / name
        shutil.copyfile(Path(runs) / FOLDER / name, target)
        out[what] = f"figures/{name}"
    return out

