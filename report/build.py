"""Assemble the lab report of a runs folder: reports/<name>/index.html, README.md and figures/."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from training.experiments.records import load_records

from . import model_figures, sections
from .budgets import Budget, budget_name, budgets_section
from .analysis import load_study_documents, summarize
from .render import Bullets, Document, Heading, Paragraph, Table, write_report
from .verdicts import critical_t

log = logging.getLogger(__name__)

# Hyperparameters that say how a run was reported, not what it learned.
NOT_SHOWN = ("seed", "verbose", "export_onnx")


class ReportError(ValueError):
    """A runs folder the report cannot be written from; the message names the folder or file."""


ERROR_BARS = (
    "**How to read the error bars:** a figure written 91.23 ± 0.45 and every error bar in the figures is the "
    "mean over n seeds ± 1 sample standard deviation of those n values (n - 1 in the denominator), where n is "
    "given beside it (seeds column, n = ... labels). It describes how much one run varies from seed to seed; "
    "it is not a standard error or a confidence interval of the mean, and the verdicts are not read off it. "
    "With n = 1 there is no spread and no error bar is drawn.")

VERDICTS = (
    "**How the verdicts are decided:** for every pair of settings of a study the report gives the difference "
    "of their mean test accuracies with a 95 % confidence interval, and calls the difference real only when "
    "that interval excludes 0. Runs with the same seed share their data split and the order in which "
    "training visits the images, so the seeds pair the runs: the interval is a paired t interval of the "
    "per-seed differences, over the seeds both settings ran (Welch's t interval when they share fewer than "
    "two seeds). With n = 3 seeds the paired interval is the mean difference ± {t3:.2f} x its standard error "
    "(t for 2 degrees of freedom), so it is wide and many differences are **unresolved**: an unresolved "
    "difference is not evidence that the two settings are equal, only that these runs cannot tell them "
    "apart. Each interval holds at 95 % on its own; over many comparisons a few real-looking differences "
    "are expected by chance.")


def _values(records: list[dict], key: str) -> str:
    return ", ".join(sorted({str(r["hyperparameters"].get(key, "")) for r in records}))


def _subsets(records: list[dict]) -> str:
    sizes = _values(records, "max_train_samples")
    return "all training images" if sizes == "0" else f"training subsets of {sizes} images (0 = all)"


def overview(name: str, studies: list, records: list[dict]) -> list:
    seeds = sorted({len(s.run_ids) for study in studies for s in study.settings})
    keys = sorted({key for r in records for key in r["hyperparameters"]} - set(NOT_SHOWN))
    recipe = [[key, records[0]["hyperparameters"][key]] for key in keys
              if len({r["hyperparameters"].get(key) for r in records}) == 1]
    recipe += [[f"images ({split})", ", ".join(sorted({f"{r[f'num_{split}']:,}" for r in records}))]
               for split in ("train", "val", "test")]
    blocks = [Paragraph(
        f"Report `{name}`: {len(studies)} studies, {len({r['run_id'] for r in records})} training runs "
        f"({', '.join(sorted({r['backend'] for r in records}))}), seeds per configuration: "
        f"{', '.join(str(s) for s in seeds)}. Each study varies one factor of the same base CNN; every "
        "configuration is trained with several seeds through the same training entry point, and every number "
        "below is computed from the JSON run records.")]
    reduced = [r for r in records if r["hyperparameters"].get("max_train_samples", "0") != "0"]
    if reduced or min(seeds) < 3:
        blocks.append(Paragraph(
            f"**Reduced run:** {min(seeds)} seed(s) per configuration, "
            f"{_values(records, 'epochs')} epoch(s), {_subsets(records)}. These numbers show the method working, "
            "not the accuracy the architectures reach with the full budget, and with so few seeds the ± "
            "figures are rough."))
    blocks.append(Paragraph(ERROR_BARS))
    blocks.append(Paragraph(VERDICTS.format(t3=critical_t(3))))
    blocks.append(Table(["hyperparameter shared by every run", "value"], recipe))
    return blocks


def method(records: list[dict]) -> list:
    return [Heading("Method"), Bullets([
        "Model selection uses the validation split only: the weights of the epoch with the best validation "
        "accuracy are restored; the test set is scored once, after training, and never used to choose anything.",
        "A ± figure is the sample standard deviation over seeds (n - 1 in the denominator).",
        "A difference between two settings is called real only when its 95 % confidence interval (paired t "
        "over the shared seeds) excludes 0; otherwise the report does not call either better.",
        "Seeds change the weight initialisation, the data order and the stratified subsets; within a seed, "
        "every setting of a study sees the same data split and the same order of training images.",
        "Seconds per epoch are wall-clock times of the machine that trained the run; compare them within one "
        "report only.",
        f"{len(records)} run records; their ids, seeds and scores are listed below.",
    ])]


def records_table(records: list[dict], memberships: dict[str, list[str]]) -> Table:
    rows = [[r["run_id"], "; ".join(memberships.get(r["run_id"], [])), str(r["seed"]),
             f"{100 * r['test_accuracy']:.2f}", f"{100 * r['val_accuracy']:.2f}", str(r["best_epoch"]),
             f"{r['mean_seconds_per_epoch']:.2f}"] for r in records]
    return Table(["run", "study / setting", "seed", "test acc. %", "val. acc. %", "best epoch", "s/epoch"], rows)


def _best(records: list[dict], runs: Path, model_type: str | None = None) -> dict | None:
    kept = [r for r in records if (runs / "models" / r["run_id"] / "model.keras").is_file()
            and (model_type is None or r["model_type"] == model_type)]
    return max(kept, key=lambda r: (r["val_accuracy"], -r["val_loss"], r["run_id"])) if kept else None


def _read_runs(runs: Path, data: str | None) -> tuple[dict, list, list[dict], dict[str, list[str]]]:
    """(channels, studies, the records of their runs, run id -> the study settings it belongs to; every
    planned run id is a key)."""
    manifest = runs / "data.json"
    if not manifest.is_file():
        raise ReportError(f"{runs}: not a runs folder (no data.json); run a study into it first "
                          "(scripts/run_study.py --runs DIR)")
    channels = json.loads(manifest.read_text(encoding="utf-8"))["channels"]
    if data:
        channels = {"train": str(data)}
    all_records = load_records(runs)
    studies = [summarize(d, all_records) for d in load_study_documents(runs)]
    if not studies:
        raise ReportError(f"{runs}/studies: no study has been run into this folder")
    memberships: dict[str, list[str]] = {}
    for study in studies:
        for setting in study.settings:
            for rid in setting.run_ids:
                memberships.setdefault(rid, []).append(f"{study.name} / {setting.label}")
    records = [all_records[rid] for rid in sorted(memberships) if rid in all_records]
    if not records:
        raise ReportError(f"{runs}/records: no run of the studies {[s.name for s in studies]} is recorded yet")
    return channels, studies, records, memberships


def _data_section(document: Document, channels: dict, folder: Path, records: list[dict]) -> None:
    try:
        from training.data import load_channels

        train, test = load_channels(channels)
        tested = sorted({int(r["num_test"]) for r in records})
        document.add(*sections.data_section(train, test, folder, tested))
    except (OSError, ValueError) as exc:
        log.warning("no data section: %s", exc)
        document.add(Heading("Data"), Paragraph(f"The data could not be read for the EDA figures ({exc}); pass "
                                                "--data DIR with a local copy of the training channel."))


def _study_sections(document: Document, studies: list, records: list[dict], runs: Path, folder: Path) -> None:
    classes = records[0]["classes"]
    baseline = next((s for s in studies if s.factor == "model"), None)
    document.add(*sections.architecture_section(baseline, _best(records, runs, "cnn")))
    if baseline:
        document.add(*sections.baseline_section(baseline, classes, folder))
    others = [s for s in studies if s is not baseline]
    if others:
        document.add(Heading("Studies: one factor at a time"))
        for study in others:
            document.add(*sections.study_section(study, folder))


def _model_sections(document: Document, studies: list, records: list[dict], runs: Path, channels: dict,
                    folder: Path, redraw: bool) -> None:
    by_id = {r["run_id"]: r for r in records}
    manifest = model_figures.ensure_model_figures(runs, studies, by_id, channels, redraw)
    if manifest and manifest["run_id"] in by_id:
        paths = model_figures.copy_figures(runs, manifest, folder)
        document.add(*sections.inside_section(by_id[manifest["run_id"]], manifest, paths))
        return
    document.add(Paragraph("No model of the base CNN was kept in the runs folder's models/ and no model figures "
                           "are in its model_figures/, so the figures that need a model (filters, feature maps, "
                           "Grad-CAM, misclassified examples) are missing."))


def _budgets(runs: Path, studies: list, records: list[dict], memberships: dict, compare: str | Path,
             names: tuple[str | None, str | None]) -> list[Budget]:
    _, other_studies, other_records, other_memberships = _read_runs(Path(compare), None)
    budgets = [Budget(names[0] or budget_name(records), runs, studies, records, memberships),
               Budget(names[1] or budget_name(other_records), Path(compare), other_studies, other_records,
                      other_memberships)]
    if budgets[0].name == budgets[1].name:
        raise ReportError(f"{runs} and {compare}: both budgets are called {budgets[0].name!r}; name them "
                          "(--budget-names A,B)")
    return budgets


def build_report(runs: str | Path, name: str, out: str | Path = "reports", data: str | None = None,
                 compare: str | Path | None = None, budget_names: tuple[str | None, str | None] = (None, None),
                 redraw_model_figures: bool = False) -> dict:
    """Write the report of `runs` to `out`/`name`, with the budget of `compare` beside it when given;
    return the paths written."""
    runs = Path(runs)
    channels, studies, records, memberships = _read_runs(runs, data)
    budgets = _budgets(runs, studies, records, memberships, compare, budget_names) if compare else None
    folder = Path(out) / name
    shutil.rmtree(folder / "figures", ignore_errors=True)
    (folder / "figures").mkdir(parents=True, exist_ok=True)
    document = Document(f"convlab lab report: {name}")
    document.add(*overview(name, studies, records))
    if budgets:
        document.add(*budgets_section(budgets))
    _data_section(document, channels, folder, records)
    _study_sections(document, studies, records, runs, folder)
    _model_sections(document, studies, records, runs, channels, folder, redraw_model_figures)
    document.add(*method(records), records_table(records, memberships))
    paths = write_report(document, folder)
    paths["figures"] = [folder / p for p in document.figures()]
    log.info("report written to %s (%d figures)", folder, len(paths["figures"]))
    return paths
