"""Two models with different inputs in one process: each keeps its own preprocessing and classes
(the model model_fn returns carries them), through the handler, the local transform's handler,
and a user override that calls convlab's input_fn without passing the context on."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from deploy.transform import Handler
from inference import handler
from inference.context import RequestContext
from tests.fixtures_data import SMALL_CNN, png_bytes


@pytest.fixture(scope="module")
def rgb_model_dir(fashion_test_images, tmp_path_factory):
    """A CNN trained for one epoch on 600 Fashion-MNIST images shrunk to 14x14 and tinted RGB."""
    from training.train import run_training

    images, labels = fashion_test_images
    small = np.stack([np.asarray(Image.fromarray(image[..., 0]).resize((14, 14)).convert("RGB")) for image in images])
    small[..., 1] //= 2  # the channels differ, so a grayscale model could not be mistaken for it
    data = tmp_path_factory.mktemp("rgb-data")
    np.savez(data / "rgb.npz", x_train=small[:400], y_train=labels[:400], x_test=small[400:], y_test=labels[400:])
    model_dir = tmp_path_factory.mktemp("rgb-model") / "model"
    run_training({**SMALL_CNN, "depth": 1, "filters": 4, "dense": "16"}, {"train": str(data)}, str(model_dir))
    return model_dir


def test_each_model_keeps_its_own_preprocessing(trained_model_dir, rgb_model_dir, fashion_test_images):
    gray = handler.model_fn(str(trained_model_dir))
    rgb = handler.model_fn(str(rgb_model_dir))       # loaded last: it must not take over the first
    assert gray.preprocessing.shape == (28, 28, 1) and rgb.preprocessing.shape == (14, 14, 3)
    body = png_bytes(fashion_test_images[0][0])
    for model, shape in ((gray, (1, 28, 28, 1)), (rgb, (1, 14, 14, 3)), (gray, (1, 28, 28, 1))):
        context = RequestContext("image/png", "application/json", model=model)
        batch = handler.input_fn(body, "image/png", context)
        assert batch.shape == shape
        document = json.loads(handler.output_fn(handler.predict_fn(batch, model), "application/json", context)[0])
        assert document["predictions"][0]["label"] in model.classes
    # Without a context, the handler refuses to guess between two different models.
    with pytest.raises(RuntimeError, match="different models are loaded"):
        handler.input_fn(body, "image/png")


def test_two_transform_handlers_in_one_process(trained_model_dir, rgb_model_dir, fashion_test_images, tmp_path):
    import shutil

    override_dir = tmp_path / "gray"
    shutil.copytree(trained_model_dir, override_dir)
    (override_dir / "code").mkdir(exist_ok=True)
    (override_dir / "code" / "inference.py").write_text(
        "from inference import handler as convlab\n\n\n"
        "def input_fn(body, content_type):\n"
        "    return convlab.input_fn(body, content_type)  # the context is found while the server runs it\n")
    gray, rgb = Handler(override_dir), Handler(rgb_model_dir)
    body = png_bytes(fashion_test_images[0][1])
    for one, shape in ((gray, (1, 28, 28, 1)), (rgb, (1, 14, 14, 3))):
        context = one.context("image/png")
        data = one.decode(body, "image/png", context)
        assert data.shape == shape
        answer = json.loads(one.encode(one.predict(data, context), context)[0])
        assert len(answer["predictions"]) == 1
