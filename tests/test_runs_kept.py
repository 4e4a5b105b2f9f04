"""Runs are kept: each `convlab train --local` in its own folder with a `latest` pointer, never
replacing a model being served; `convlab runs` lists them; each run ends with a summary and writes
its figures; and `convlab train --model cnn` is the lab's base CNN. Run as a newcomer runs them
(`python -m convlab ...` in child processes, as the README's `convlab ...`)."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from inference.local import LocalServer, invoke
from training.metrics import near_chance

from .fixtures_data import png_bytes
from .test_newcomer import run

SMALL = ["--max_train_samples", "600", "--max_test_samples", "200", "--filters", "8", "--dense", "32",
         "--export_onnx", "false", "--verbose", "0"]
RUN_ID = re.compile(r"^\d{8}-\d{6}-cnn-[0-9a-f]{10}(-\d+)?$")


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def two_runs(fashion_subset_dir, fashion_test_images, tmp_path_factory):
    """Two runs in one work folder; the first one's model is served while the second trains."""
    work = tmp_path_factory.mktemp("work")
    first = run("-m", "convlab", "train", "--train", str(fashion_subset_dir), "--work-dir", str(work),
                "--epochs", "1", *SMALL)
    assert first.returncode == 0, first.stderr[-3000:]
    first_run = (work / "latest").resolve()
    before = digest(first_run / "model")
    image = png_bytes(fashion_test_images[0][0])
    server = LocalServer(work / "latest" / "model").start()
    try:
        server.wait_ready(timeout=300)  # TensorFlow's SavedModel on a shared 2-core machine
        second = run("-m", "convlab", "train", "--train", str(fashion_subset_dir), "--work-dir", str(work),
                     "--epochs", "2", *SMALL)
        served = invoke(server.port, image, "image/png", "application/json")
    finally:
        server.stop()
    assert second.returncode == 0, second.stderr[-3000:]
    return {"work": work, "first": first, "second": second, "first_run": first_run,
            "second_run": (work / "latest").resolve(), "before": before, "served": served}


def test_each_run_has_its_own_folder_and_latest_points_at_the_newest(two_runs):
    work, first_run, second_run = two_runs["work"], two_runs["first_run"], two_runs["second_run"]
    assert first_run != second_run and first_run.parent == second_run.parent == work / "runs"
    assert RUN_ID.match(first_run.name) and RUN_ID.match(second_run.name)
    assert first_run.name[16:] != second_run.name[16:]  # another config (epochs), another hash
    assert (work / "latest").is_symlink()
    for folder, epochs in ((first_run, 1), (second_run, 2)):
        metrics = json.loads((folder / "model" / "metrics.json").read_text())
        assert metrics["epochs_completed"] == epochs
        assert json.loads((folder / "run.json").read_text())["run_id"] == folder.name


def test_a_new_run_leaves_the_served_model_untouched(two_runs):
    status, _, body = two_runs["served"]
    assert status == 200 and json.loads(body)["predictions"][0]["label"]
    assert digest(two_runs["first_run"] / "model") == two_runs["before"]


def test_a_run_ends_with_a_summary_and_the_next_command(two_runs):
    work, second_run = two_runs["work"], two_runs["second_run"]
    metrics = json.loads((second_run / "model" / "metrics.json").read_text())
    out = two_runs["second"].stdout.strip().splitlines()
    start = max(i for i, line in enumerate(out) if line.startswith(f"run {second_run.name}: "))
    lines = out[start:]
    # 8 optimizer steps may leave a batch-norm CNN at chance: then the warning comes second.
    if near_chance(metrics["test_accuracy"], metrics["confusion_matrix"]):
        assert lines.pop(1) == "warning: that is at or near chance; see the warning above for what to try"
    assert len(lines) == 5
    assert lines[0] == (f"run {second_run.name}: test accuracy {metrics['test_accuracy']:.4f} on "
                        f"{metrics['num_test']} test images, 10 classes, 2 epochs")
    matrix = metrics["confusion_matrix"]
    worst = max(matrix[t][p] for t in range(10) for p in range(10) if t != p)
    assert re.fullmatch(rf"most confused: .+ taken for .+ \({worst} test images\)", lines[1]), lines
    assert lines[2] == f"model: {work / 'latest' / 'model'}"
    assert lines[3].startswith("figures: ")
    assert lines[4] == f"next: convlab serve --model-dir {work / 'latest' / 'model'}"


def test_each_run_writes_a_learning_curve_and_a_confusion_matrix(two_runs):
    pytest.importorskip("matplotlib")
    for folder in (two_runs["first_run"], two_runs["second_run"]):
        for name in ("learning_curve.png", "confusion_matrix.png"):
            with Image.open(folder / "figures" / name) as image:
                assert image.format == "PNG" and image.width >= 300 and image.height >= 250


def test_convlab_runs_lists_every_run(two_runs, fashion_subset_dir):
    work = two_runs["work"]
    done = run("-m", "convlab", "runs", "--work-dir", str(work), "--json")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["run"] for r in rows] == [two_runs["first_run"].name, two_runs["second_run"].name]
    for row, folder, epochs in zip(rows, (two_runs["first_run"], two_runs["second_run"]), (1, 2)):
        metrics = json.loads((folder / "model" / "metrics.json").read_text())
        assert row["data"] == str(Path(fashion_subset_dir).resolve()) and row["model"] == "cnn"
        assert f"epochs={epochs} " in row["hyperparameters"] and "filters=8" in row["hyperparameters"]
        assert row["test acc"] == f"{metrics['test_accuracy']:.4f}"
        assert row["model dir"] == str(folder / "model")
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row["started (UTC)"])
    table = run("-m", "convlab", "runs", "--work-dir", str(work)).stdout.splitlines()
    assert table[0].split()[:3] == ["run", "started", "(UTC)"] and len(table) == 3
    assert table[2].startswith("*" + two_runs["second_run"].name) and table[1].startswith(" ")


def test_runs_in_an_empty_work_folder_says_how_to_make_one(tmp_path):
    done = run("-m", "convlab", "runs", "--work-dir", str(tmp_path))
    assert done.returncode == 1 and "convlab train --local --train DATA_DIR" in done.stderr


def test_convlab_train_cnn_is_the_labs_base_cnn(two_runs):
    """What was not given is the lab's training/studies/base.json, as the README's answers are."""
    base = json.loads((Path(__file__).resolve().parent.parent / "training/studies/base.json").read_text())
    metrics = json.loads((two_runs["second_run"] / "model" / "metrics.json").read_text())
    lab = base["hyperparameters"]
    assert metrics["config"]["batch_norm"] is lab["batch_norm"] is True
    assert metrics["config"]["dropout"] == lab["dropout"] == 0.3
    assert metrics["hyperparameters"]["lr_schedule"] == lab["lr_schedule"] == "cosine"
    assert "the lab's base CNN (training/studies/base.json) for what was not given: batch_norm=true, " \
           "dropout=0.3, lr_schedule=cosine" in two_runs["first"].stderr


def test_given_hyperparameters_win_over_the_labs_and_help_says_which_is_which():
    from convlab.train_cli import with_lab_defaults

    assert with_lab_defaults({"batch_norm": "false"}) == {"batch_norm": "false", "dropout": "0.3",
                                                          "lr_schedule": "cosine"}
    mlp = with_lab_defaults({"model": "mlp"})
    assert mlp["dense"] == "128" and mlp["dropout"] == "0.3" and "epochs" not in mlp
    done = run("-m", "convlab", "train", "--help")
    text = " ".join(done.stdout.split())
    assert "those not given are the lab's (training/studies/base.json): batch_norm true, dropout 0.3, " \
           "lr_schedule cosine" in text
    entry = " ".join(run("-m", "training.train", "--help").stdout.split())
    assert "the entry point's defaults; `convlab train --local` takes the lab's training/studies/base.json" in entry
