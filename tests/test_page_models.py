"""The try-it page for any model, not only Fashion-MNIST: a colour model trained on a folder of RGB
images is served, and the page offers that model's own test images (saved at training), shows what
the model sees in colour, names its classes and test accuracy, refuses an oversized upload saying
by how much, paints no empty boxes, and has an icon. Real training, real server, headless Chromium."""
from __future__ import annotations

import io
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from inference.local import LocalServer, request
from tests.fixtures_data import png_bytes
from tests.test_page import CANVAS_VARIANCE, _wait_state, browser  # noqa: F401  (browser is a fixture)

COLOURS = {"red": (200, 30, 30), "green": (30, 180, 40), "blue": (30, 40, 200)}
CONTAINERS = ("samples", "samples-hint", "blocks", "filters-section", "answer", "error")


def _colour_folder(root: Path, per_class: int = 40, size: int = 16) -> Path:
    rng = np.random.default_rng(5)
    for name, rgb in COLOURS.items():
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            image = np.clip(np.asarray(rgb) + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
            (root / name / f"{index}.png").write_bytes(png_bytes(image))
    return root


@pytest.fixture(scope="module")
def colour_model_dir(tmp_path_factory) -> Path:
    from training.train import run_training

    data = _colour_folder(tmp_path_factory.mktemp("colours") / "colours")
    model_dir = tmp_path_factory.mktemp("colour-model") / "model"
    run_training({"model": "cnn", "depth": 1, "filters": 8, "dense": "16", "epochs": 3, "batch_size": 16,
                  "seed": 3, "verbose": 0, "export_onnx": "false"}, {"train": str(data)}, str(model_dir))
    return model_dir


@pytest.fixture(scope="module")
def colour_server(colour_model_dir, tmp_path_factory):
    with LocalServer(colour_model_dir, log_path=tmp_path_factory.mktemp("colour-server") / "server.log",
                     args=["--max-payload-mb", "1"]) as running:
        yield running
        assert running.stop() == 0, running.log_text()[-2000:]


def test_training_saves_one_test_image_per_class_into_the_model_dir(colour_model_dir):
    from PIL import Image

    listed = json.loads((colour_model_dir / "samples" / "samples.json").read_text())["samples"]
    assert [(e["file"], e["label"], e["class_index"]) for e in listed] == [
        ("00-blue.png", "blue", 0), ("01-green.png", "green", 1), ("02-red.png", "red", 2)]
    for entry in listed:
        image = np.asarray(Image.open(colour_model_dir / "samples" / entry["file"]))
        assert image.shape == (16, 16, 3)
        assert int(np.argmax(image.reshape(-1, 3).mean(axis=0))) == {"red": 0, "green": 1, "blue": 2}[entry["label"]]


def test_the_routes_describe_this_model_not_fashion_mnist(colour_server, colour_model_dir):
    status, _, body = request(colour_server.port, "GET", "/samples")
    offered = json.loads(body)
    assert status == 200 and offered["source"] == "model"
    assert [s["label"] for s in offered["samples"]] == ["blue", "green", "red"]
    assert not any("static/samples" in s["url"] for s in offered["samples"])
    status, headers, body = request(colour_server.port, "GET", offered["samples"][2]["url"])
    assert status == 200 and headers["content-type"] == "image/png"
    assert body == (colour_model_dir / "samples" / "02-red.png").read_bytes()
    for path in ("/model-samples/../metrics.json", "/model-samples/samples.json", "/model-samples/none.png"):
        assert request(colour_server.port, "GET", path)[0] == 404, path

    about = json.loads(request(colour_server.port, "GET", "/about")[2])
    metrics = json.loads((colour_model_dir / "metrics.json").read_text())
    assert about["classes"] == ["blue", "green", "red"] and about["test_accuracy"] == metrics["test_accuracy"]
    assert about["max_payload_mb"] == 1 and about["input"]["color_mode"] == "RGB"

    status, headers, body = request(colour_server.port, "GET", "/favicon.ico")
    assert status == 200 and headers["content-type"] == "image/svg+xml" and body.startswith(b"<svg")

    image = np.zeros((16, 16, 3), np.uint8)
    image[..., 0], image[..., 2] = 220, 40
    explained = json.loads(request(colour_server.port, "POST", "/explain", png_bytes(image),
                                   {"Content-Type": "image/png"})[2])
    assert np.asarray(explained["input"]).shape == (16, 16, 3)
    assert np.allclose(explained["input"][0][0], [220 / 255, 0, 40 / 255], atol=1e-4)

    big = b"\0" * (2 * 1024 * 1024)
    status, _, body = request(colour_server.port, "POST", "/invocations", big, {"Content-Type": "application/x-npy"})
    assert status == 413 and "too large (2.0 MB, limit 1 MB)" in json.loads(body)["message"]


def test_a_model_without_samples_offers_none_and_fashion_mnist_gets_the_bundled_ones(colour_model_dir,
                                                                                      trained_model_dir, tmp_path):
    from inference.page import offered_samples

    bare = Path(shutil.copytree(colour_model_dir, tmp_path / "bare"))
    shutil.rmtree(bare / "samples")
    offered = offered_samples(bare)
    assert offered["source"] == "none" and offered["samples"] == [] and "no samples/" in offered["note"]
    fashion = Path(shutil.copytree(trained_model_dir, tmp_path / "fashion"))
    assert offered_samples(fashion)["source"] == "model"
    shutil.rmtree(fashion / "samples")
    bundled = offered_samples(fashion)
    assert bundled["source"] == "bundled" and {s["label"] for s in bundled["samples"]} >= {"trouser", "bag"}


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.found: dict[str, dict] = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.found[attrs["id"]] = attrs
        if tag == "link" and attrs.get("rel") == "icon":
            self.found["icon"] = attrs


EMPTY_VISIBLE = """
return arguments[0].filter((id) => {
  const element = document.getElementById(id);
  return element.offsetParent !== null && element.textContent.trim() === "" && !element.querySelector("canvas,img");
});
"""


def test_the_page_for_a_colour_model(colour_server, browser, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    tags = _Tags()
    tags.feed(request(colour_server.port, "GET", "/")[2].decode())
    assert all("hidden" in tags.found[name] for name in CONTAINERS)  # nothing empty on the first paint
    assert tags.found["icon"]["href"] == "/static/favicon.svg"

    browser.get(f"http://127.0.0.1:{colour_server.port}/")
    WebDriverWait(browser, 30).until(lambda d: "test accuracy" in d.find_element(By.ID, "model-info").text)
    header = browser.find_element(By.ID, "model-info").text
    assert re.search(r"3 classes: blue, green, red · test accuracy \d+\.\d % on \d+ images", header), header
    assert browser.execute_script(EMPTY_VISIBLE, list(CONTAINERS) + ["filters"]) == []
    buttons = browser.find_elements(By.CSS_SELECTOR, "#samples button")
    assert [b.get_attribute("title") for b in buttons] == ["blue", "green", "red"]

    buttons[2].click()
    _wait_state(browser, "shown")
    assert browser.find_element(By.ID, "input-caption").text == "what the model sees (16x16, colour)"
    pixels = browser.execute_script("""
        const c = document.getElementById("input");
        const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        let r = 0, g = 0, b = 0;
        for (let i = 0; i < d.length; i += 4) { r += d[i]; g += d[i + 1]; b += d[i + 2]; }
        return [r, g, b];""")
    assert pixels[0] > 2 * pixels[1] and pixels[0] > 2 * pixels[2], pixels  # red, not a channel mean
    assert browser.execute_script(EMPTY_VISIBLE, list(CONTAINERS) + ["filters"]) == []

    large = tmp_path / "large.png"
    large.write_bytes(png_bytes(np.zeros((16, 16, 3), np.uint8)) + b"\0" * (3 * 1024 * 1024))
    browser.find_element(By.ID, "file").send_keys(str(large))
    _wait_state(browser, "error")
    error = browser.find_element(By.ID, "error").text
    assert "too large (3.0 MB, limit 1 MB)" in error and "could not read" not in error
    assert "could not read" not in browser.find_element(By.ID, "inside-note").text
    browser.save_screenshot(str(tmp_path / "colour-page.png"))
    assert io.BytesIO((tmp_path / "colour-page.png").read_bytes()).getbuffer().nbytes > 10_000
