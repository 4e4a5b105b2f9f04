"""docs/lab: the published study. Its report regenerates byte for byte from the committed run
records, and the README's headline numbers are the records' own."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LAB = REPO / "docs" / "lab"


def test_the_published_report_regenerates_identically(fashion_mnist_dir, tmp_path):
    from report.build import build_report

    runs = tmp_path / "lab"
    runs.mkdir()
    for name in ("records", "studies"):
        shutil.copytree(LAB / name, runs / name)
    shutil.copy(LAB / "data.json", runs / "data.json")
    build_report(runs, "lab", tmp_path / "out", data=str(fashion_mnist_dir))
    published = sorted(p.relative_to(LAB) for p in [LAB / "README.md", LAB / "index.html",
                                                    *(LAB / "figures").glob("*.png")])
    regenerated = sorted(p.relative_to(tmp_path / "out" / "lab") for p in (tmp_path / "out" / "lab").rglob("*")
                         if p.is_file())
    assert published == regenerated
    different = [str(p) for p in published if (LAB / p).read_bytes() != (tmp_path / "out" / "lab" / p).read_bytes()]
    assert different == [], different
    assert sum((LAB / p).stat().st_size for p in published if p.suffix == ".png") < 5 * 1024 * 1024


def test_the_readme_states_the_studys_numbers():
    from report.analysis import load_study_documents, pct_pm, summarize
    from training.experiments.records import load_records

    readme = (REPO / "README.md").read_text()
    records = load_records(LAB)
    for document in load_study_documents(LAB):
        study = summarize(document, records)
        for setting in study.settings:
            assert setting.n >= 3, (study.name, setting.label)
            stated = f"{setting.label} {pct_pm(setting)} % (n={setting.n})"
            assert stated in readme, stated
    assert re.search(r"\(docs/lab/README\.md\)", readme)


def test_the_readmes_verdicts_are_the_reports():
    """Every difference and interval the README's answers state is one the published report computed."""
    readme = (REPO / "README.md").read_text()
    answers = readme[readme.index("## The lab's answers"):readme.index("## Three ways to run")]
    report = (LAB / "README.md").read_text()
    stated = re.findall(r"([\w .,+x-]+? vs [\w .,+x-]+?): ([+-][\d.]+ points, 95 % interval \[[^\]]+\])", answers)
    assert len(stated) >= 9, stated
    for pair, numbers in stated:
        pair = pair.split(". ")[-1].split("; ")[-1].strip()
        assert f"{pair}: difference {numbers}" in report, (pair, numbers)
