"""The lab report, written from the records of a real (small) study: figures, tables, determinism."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from . import conftest

if "tests.fixtures_experiments" not in conftest.pytest_plugins:
    from .fixtures_experiments import study_report, study_runs  # noqa: F401

REPO = Path(__file__).resolve().parent.parent
FIGURE = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")


def _table_rows(readme: str, header_start: str) -> list[list[str]]:
    """Rows of the first markdown table whose header starts with `header_start`."""
    lines = readme.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def test_the_report_and_every_figure_it_references_exist(study_report):
    paths, out = study_report
    folder = out / "tiny"
    readme = (folder / "README.md").read_text()
    html = (folder / "index.html").read_text()
    referenced = FIGURE.findall(readme)
    assert referenced and all((folder / path).is_file() for path in referenced)
    assert sorted(referenced) == sorted(str(p.relative_to(folder)) for p in paths["figures"])
    # The HTML embeds the same figures (self-contained), in the same order, and links to no file.
    assert re.findall(r'data-file="([^"]+)"', html) == referenced
    assert html.count('src="data:image/png;base64,') == len(referenced)
    assert not re.search(r'src="(?!data:)', html)
    expected = {"eda_class_distribution", "eda_samples", "eda_mean_images", "eda_pixel_histogram",
                "baseline_params", "baseline_learning_curves", "baseline_confusion", "baseline_per_class",
                "cnn_filters", "cnn_feature_maps", "cnn_grad_cam", "misclassified", "new_photos"}
    for study in ("baseline", "kernel_size"):
        expected |= {f"study_{study}_{what}" for what in ("accuracy", "cost", "time")}
    assert {Path(p).stem for p in referenced} == expected
    for path in referenced:
        assert (folder / path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tables_match_the_records(study_runs, study_report):
    runs = study_runs[0]
    readme = (study_report[1] / "tiny" / "README.md").read_text()
    records = {p.stem: json.loads(p.read_text()) for p in (runs / "records").glob("*.json")}
    for name, header in (("baseline", "| setting | model |"), ("kernel_size", "| setting | kernel_size |")):
        document = json.loads((runs / "studies" / f"{name}.json").read_text())
        rows = {row[0]: row for row in _table_rows(readme, header)}
        assert set(rows) == {s["label"] for s in document["settings"]}
        for setting in document["settings"]:
            row = rows[setting["label"]]
            group = [records[rid] for rid in setting["run_ids"]]
            for column, key in ((3, "test_accuracy"), (4, "val_accuracy")):
                values = 100 * np.array([r[key] for r in group])
                mean, std = (float(x) for x in row[column].split(" ± "))
                assert mean == pytest.approx(values.mean(), abs=0.005)
                assert std == pytest.approx(values.std(ddof=1), abs=0.005)
            assert row[2] == f"{len(group)}/{len(setting['run_ids'])}"
            assert int(row[5].replace(",", "")) == group[0]["params"]
            assert float(row[7]) == pytest.approx(np.mean([r["mean_seconds_per_epoch"] for r in group]), abs=0.005)
    listed = {row[0]: row for row in _table_rows(readme, "| run |")}
    assert set(listed) == set(records)
    for rid, record in records.items():
        assert listed[rid][3] == f"{100 * record['test_accuracy']:.2f}"


def test_conclusions_follow_the_intervals(study_report):
    readme = (study_report[1] / "tiny" / "README.md").read_text()
    assert "**Reduced run:** 2 seed(s) per configuration" in readme
    assert "Highest mean test accuracy: **" in readme
    verdicts = re.findall(r"\(paired t over 2 seeds\): the interval (includes|excludes) 0", readme)
    assert len(verdicts) == 2  # one comparison in each two-setting study


def test_architecture_paragraphs_are_computed_from_the_config(study_runs, study_report):
    readme = (study_report[1] / "tiny" / "README.md").read_text()
    # Base CNN of the fixture: 3x3 kernels, 8 then 16 filters, 2x2 max pooling after each of 2 blocks.
    assert "the first conv layer's 72 weights (3x3x1x8) are reused at all 28x28 positions" in readme
    assert "block 1: 8 filters, 14x14 maps, receptive field 4x4 px; block 2: 16 filters, 7x7 maps, " \
           "receptive field 10x10 px" in readme
    assert "each of the 32 first-layer units has its own weight for every one of them: 25,088 weights" in readme


def test_regenerating_the_report_gives_identical_files(study_runs, study_report, tmp_path):
    from report import build_report

    runs = study_runs[0]
    first = study_report[1] / "tiny"
    second = build_report(runs, "tiny", tmp_path)
    for name in ["README.md", "index.html"] + [f"figures/{p.name}" for p in second["figures"]]:
        assert (tmp_path / "tiny" / name).read_bytes() == (first / name).read_bytes(), name


def test_the_command_line_reports_a_folder_that_is_not_a_runs_folder(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "make_report.py"), "--runs", str(tmp_path),
                             "--out", str(tmp_path / "reports")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert f"{tmp_path}: not a runs folder (no data.json)" in result.stderr
