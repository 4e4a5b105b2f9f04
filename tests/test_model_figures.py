"""Model figures of a study's base CNN: drawn from its kept model_dir into <runs>/model_figures, put in
the report, and used as they are once the model is gone. A small CNN trained on a Fashion-MNIST subset."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

SMALL = {"epochs": 1, "batch_size": 64, "filters": 8, "dense": "32", "max_train_samples": 1500,
         "max_test_samples": 300}
SPEC = {"name": "baseline", "title": "MLP vs CNN", "factor": "model", "seeds": 1, "base_overrides": SMALL,
        "settings": [{"label": "MLP", "model": "mlp"}, {"label": "CNN", "model": "cnn"}]}
NAMES = ("cnn_filters.png", "cnn_feature_maps.png", "cnn_grad_cam.png", "misclassified.png", "new_photos.png")


@pytest.fixture(scope="module")
def cnn_runs(fashion_subset_dir, tmp_path_factory):
    """A runs folder whose base CNN (one seed) is trained and kept; the MLP is not run."""
    from training.experiments import study_from_dict
    from training.experiments.runner import plan_studies, prepare_runs_folder, train_one

    runs = tmp_path_factory.mktemp("figures") / "runs"
    channels = {"train": str(fashion_subset_dir)}
    plan = plan_studies([study_from_dict(SPEC, "baseline.json")])
    prepare_runs_folder(runs, channels, plan)
    cnn = next(r for r in plan.runs if r.run_id.startswith("cnn-"))
    train_one(cnn, channels, runs)
    return runs, cnn.run_id, channels


def test_the_report_draws_the_base_cnns_figures_from_its_kept_model(cnn_runs, tmp_path):
    from report import build_report

    runs, run_id, _ = cnn_runs
    paths = build_report(runs, "inside", tmp_path)
    manifest = json.loads((runs / "model_figures" / "model_figures.json").read_text())
    record = json.loads((runs / "records" / f"{run_id}.json").read_text())
    assert manifest["run_id"] == run_id and manifest["test_images"] == record["num_test"] == 300
    # The same model on the same test images: the record's accuracy, to the rounding of float32 sums.
    assert manifest["rescored_accuracy"] == pytest.approx(record["test_accuracy"], abs=1.5 / 300)
    assert manifest["block_sizes"] == ["14x14x8", "7x7x16"] and manifest["grad_cam_layer"] == "block2_pool"
    assert [p["class"] for p in manifest["per_class_images"]] == record["classes"]
    folder = tmp_path / "inside"
    readme = (folder / "README.md").read_text()
    for name in NAMES:
        assert (folder / "figures" / name).read_bytes() == (runs / "model_figures" / name).read_bytes()
        assert (folder / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"](figures/{name})" in readme
    assert {p.name for p in paths["figures"]} >= set(NAMES)
    assert f"The CNN shown is run `{run_id}` (seed 0), the base CNN's recorded run with the highest validation " \
           "accuracy whose model was kept" in readme
    assert f"The most confident of the {manifest['mistakes']:,} test images (of 300)" in readme
    photos = manifest["new_photos"]
    assert photos["images"] == 300 and 0.0 <= photos["photo_unmapped"] <= 1.0
    # The plain tiles through the handler score what the record says the model scores on them.
    assert photos["plain"] == pytest.approx(record["test_accuracy"], abs=1.5 / 300)
    assert f"{100 * photos['photo']:.2f} % right on the photos, against {100 * photos['plain']:.2f} %" in readme


def test_one_test_image_per_class_right_when_the_model_gets_one_right(cnn_runs):
    from report import inside

    runs, run_id, channels = cnn_runs
    record = json.loads((runs / "records" / f"{run_id}.json").read_text())
    model = inside.load_model(runs / "models" / run_id)
    images, labels, classes = inside.run_test_set(record, channels)
    probabilities = inside.predict(model, images)
    picks = inside.one_per_class(labels, probabilities, classes)
    assert [int(labels[i]) for i in picks] == list(range(len(classes)))
    right = probabilities.argmax(axis=1) == labels
    for index, pick in enumerate(picks):
        members = np.flatnonzero(labels == index)
        expected = members[right[members]][0] if right[members].any() else members[0]
        assert pick == expected


def test_grad_cam_is_the_gradient_weighted_last_block(cnn_runs):
    """The heat map computed by hand: d logit / d (last block's output) through Flatten, Dense+ReLU and the
    logits layer (dropout is off at inference), averaged over positions, weighting the block's channels."""
    import keras
    import tensorflow as tf

    from report import inside

    runs, run_id, channels = cnn_runs
    record = json.loads((runs / "records" / f"{run_id}.json").read_text())
    model = inside.load_model(runs / "models" / run_id)
    images = inside.run_test_set(record, channels)[0][:6]
    heat, predicted = inside.grad_cam(model, images)
    maps = np.asarray(keras.Model(model.inputs, model.get_layer("block2_pool").output)(
        [images.astype(np.float32) / 255.0], training=False), dtype=np.float64)
    w1, b1 = (np.asarray(v, dtype=np.float64) for v in model.get_layer("dense1").get_weights())
    w2, b2 = (np.asarray(v, dtype=np.float64) for v in model.get_layer("logits").get_weights())
    hidden = maps.reshape(len(maps), -1) @ w1 + b1
    logits = np.maximum(hidden, 0) @ w2 + b2
    assert list(predicted) == list(logits.argmax(axis=1))
    gradients = ((hidden > 0) * w2[:, predicted].T) @ w1.T
    weights = gradients.reshape(maps.shape).mean(axis=(1, 2))
    cams = np.maximum(np.einsum("nhwc,nc->nhw", maps, weights), 0)
    cams /= np.maximum(cams.max(axis=(1, 2), keepdims=True), 1e-12)
    expected = np.asarray(tf.image.resize(cams[..., None].astype(np.float32), (28, 28), method="bilinear"))[..., 0]
    assert heat.shape == (6, 28, 28)
    np.testing.assert_allclose(heat, expected, atol=1e-4)
    assert heat.min() >= 0 and heat.max() <= 1 + 1e-6


def test_committed_figures_are_used_as_they_are_once_the_model_is_gone(cnn_runs, tmp_path):
    from report import build_report

    runs, run_id, _ = cnn_runs
    copy = tmp_path / "runs"
    shutil.copytree(runs, copy, ignore=shutil.ignore_patterns("models"))
    before = {n: (copy / "model_figures" / n).read_bytes() for n in NAMES + ("model_figures.json",)}
    build_report(copy, "clone", tmp_path / "out")
    assert {n: (copy / "model_figures" / n).read_bytes() for n in before} == before
    readme = (tmp_path / "out" / "clone" / "README.md").read_text()
    assert "](figures/cnn_grad_cam.png)" in readme and f"run `{run_id}`" in readme
    # With or without the model, the same report, byte for byte.
    build_report(runs, "clone", tmp_path / "with-model")
    for name in ("README.md", "index.html"):
        assert (tmp_path / "with-model" / "clone" / name).read_bytes() == (tmp_path / "out" / "clone" / name).read_bytes()
    # Figures that show another run than the kept model's are drawn again; no figures and no model: said so.
    manifest = json.loads((runs / "model_figures" / "model_figures.json").read_text())
    (runs / "model_figures" / "model_figures.json").write_text(json.dumps({**manifest, "run_id": "cnn-other-seed0"}))
    build_report(runs, "redrawn", tmp_path / "out")
    assert json.loads((runs / "model_figures" / "model_figures.json").read_text())["run_id"] == run_id
    shutil.rmtree(copy / "model_figures")
    build_report(copy, "none", tmp_path / "out")
    readme = (tmp_path / "out" / "none" / "README.md").read_text()
    assert "No model of the base CNN was kept" in readme and "cnn_grad_cam" not in readme
