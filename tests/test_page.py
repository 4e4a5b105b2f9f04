"""The try-it page of `convlab serve`: its routes over real sockets against the real server process,
the feature maps it shows against the trained Keras model, and the page itself in headless Chromium."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from inference.local import LocalServer, invoke, request
from tests.fixtures_data import png_bytes

SAMPLES = Path(__file__).resolve().parent.parent / "inference" / "static" / "samples"


@pytest.fixture(scope="module")
def server(trained_model_dir, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("page-server") / "server.log"
    with LocalServer(trained_model_dir, log_path=log_path) as running:
        yield running
        code = running.stop()
    assert code == 0, running.log_text()[-2000:]


def _keras_maps(model_dir: Path, image: np.ndarray) -> dict[str, np.ndarray]:
    import keras

    blocks = [b["name"] for b in json.loads((model_dir / "explain.json").read_text())["blocks"]]
    model = keras.saving.load_model(model_dir / "model.keras", compile=False)
    probe = keras.Model(model.inputs, [model.get_layer(name).output for name in blocks])
    outputs = probe([image[None].astype(np.float32) / 255.0], training=False)
    return {name: np.asarray(output)[0] for name, output in zip(blocks, outputs)}


def test_the_page_and_its_files_are_served(server):
    status, headers, body = request(server.port, "GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'<input id="file" type="file"' in body and b"/static/page.js" in body
    assert b"http" not in body.replace(b"http-equiv", b"")  # nothing fetched from elsewhere
    for name, media in (("page.js", "text/javascript"), ("page.css", "text/css")):
        status, headers, body = request(server.port, "GET", f"/static/{name}")
        assert status == 200 and headers["content-type"].startswith(media) and len(body) > 500
    status, headers, body = request(server.port, "GET", f"/static/samples/{sorted(os.listdir(SAMPLES))[0]}")
    assert status == 200 and headers["content-type"] == "image/png" and body[:4] == b"\x89PNG"
    for path in ("/static/../app.py", "/static/missing.js", "/static/samples"):
        status, _, body = request(server.port, "GET", path)
        assert status == 404, path
        assert json.loads(body)["status"] == 404


def test_explain_gives_the_feature_maps_of_the_trained_model(server, trained_model_dir, fashion_test_images):
    image = fashion_test_images[0][3]
    status, _, body = request(server.port, "POST", "/explain", png_bytes(image), {"Content-Type": "image/png"})
    assert status == 200, body[:300]
    document = json.loads(body)
    assert document["source"] == "explain.onnx (ONNX Runtime)"
    assert np.allclose(document["input"], image[..., 0] / 255.0, atol=1e-4)
    expected = _keras_maps(trained_model_dir, image)
    assert [b["name"] for b in document["blocks"]] == list(expected) == ["block1_pool", "block2_pool"]
    for block in document["blocks"]:
        maps = expected[block["name"]]
        assert block["shape"] == list(maps.shape)
        order = np.argsort(-maps.mean(axis=(0, 1)), kind="stable")[:8]
        assert [m["channel"] for m in block["maps"]] == order.tolist()
        for shown in block["maps"]:
            assert np.allclose(shown["values"], maps[:, :, shown["channel"]], atol=2e-3)
    kernel = np.asarray(json.loads((trained_model_dir / "explain.json").read_text())["filters"]["weights"])
    assert len(document["filters"]["kernels"]) == kernel.shape[-1] == 16
    assert np.allclose(document["filters"]["kernels"][5], kernel[:, :, :, 5].mean(axis=2), atol=1e-4)


def test_explain_refuses_bad_uploads_as_invocations_does(server):
    for body, content_type, status in ((b"not an image", "image/png", 400), (b"{}", "text/plain", 415),
                                       (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "image/png", 400)):
        explain = request(server.port, "POST", "/explain", body, {"Content-Type": content_type})
        invoked = invoke(server.port, body, content_type)
        assert explain[0] == invoked[0] == status
        assert json.loads(explain[2]) == json.loads(invoked[2])
    status, _, _ = request(server.port, "GET", "/ping")
    assert status == 200


def test_without_explain_onnx_the_maps_come_from_tensorflow(trained_model_dir, tmp_path, fashion_test_images):
    from inference.page import Explainer

    copy = tmp_path / "model"
    shutil.copytree(trained_model_dir, copy)
    image = fashion_test_images[0][3].astype(np.float32) / 255.0
    with_onnx = Explainer(copy).explain(image)
    (copy / "explain.onnx").unlink()
    with_tf = Explainer(copy).explain(image)
    assert with_tf["source"] == "model.keras (TensorFlow)"
    for a, b in zip(with_onnx["blocks"], with_tf["blocks"]):
        assert [m["channel"] for m in a["maps"]][:4] == [m["channel"] for m in b["maps"]][:4]
        assert np.allclose(a["maps"][0]["values"], b["maps"][0]["values"], atol=2e-3)
    (copy / "explain.json").unlink()
    bare = Explainer(copy).explain(image)
    assert bare["blocks"] == [] and "explain.json not found" in bare["note"]


# --- the page in a real browser -------------------------------------------------------------------

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        pytest.skip(f"no headless browser: {CHROMIUM} and {CHROMEDRIVER} are needed (apt-get install chromium "
                    "chromium-driver)")
    import os

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not download a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1100,1250",
                     f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


CANVAS_VARIANCE = """
return Array.from(document.querySelectorAll(arguments[0])).map((canvas) => {
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  const values = [];
  for (let i = 0; i < data.length; i += 4) values.push(data[i] + data[i + 1] + data[i + 2]);
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  return values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length;
});
"""


def _wait_state(driver, state: str, timeout: float = 30.0) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: d.execute_script("return document.body.dataset.state") == state)


def test_the_page_predicts_shows_feature_maps_and_errors(server, browser, fashion_test_images, tmp_path):
    from selenium.webdriver.common.by import By

    image, label = fashion_test_images[0][7], int(fashion_test_images[1][7])
    upload = tmp_path / "upload.png"
    upload.write_bytes(png_bytes(image))
    browser.get(f"http://127.0.0.1:{server.port}/")
    browser.find_element(By.ID, "file").send_keys(str(upload))
    _wait_state(browser, "shown")
    status, _, payload = invoke(server.port, upload.read_bytes(), "image/png")
    expected = json.loads(payload)["predictions"][0]
    assert status == 200 and label >= 0
    assert browser.find_element(By.ID, "prediction").text == expected["label"]
    bars = browser.find_elements(By.CSS_SELECTOR, "#bars .bar")
    assert len(bars) == 10 and "top" in bars[expected["class_index"]].get_attribute("class")
    maps = browser.execute_script(CANVAS_VARIANCE, "canvas.fmap")
    assert len(maps) == 16 and all(v > 0 for v in maps), maps  # 8 channels x 2 blocks, none blank
    filters = browser.execute_script(CANVAS_VARIANCE, "canvas.filter")
    assert len(filters) == 16 and sum(v > 0 for v in filters) >= 12
    assert browser.execute_script(CANVAS_VARIANCE, "#input")[0] > 0
    assert browser.find_element(By.ID, "error").is_displayed() is False
    browser.save_screenshot(str(tmp_path / "page.png"))
    assert (tmp_path / "page.png").stat().st_size > 10_000

    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    browser.find_element(By.ID, "file").send_keys(str(corrupt))
    _wait_state(browser, "error")
    error = browser.find_element(By.ID, "error")
    assert error.is_displayed()
    assert error.text.startswith("400 bad request: image/png: the body is not a readable image")
    assert browser.find_element(By.ID, "answer").is_displayed() is False
    browser.save_screenshot(str(tmp_path / "page-error.png"))


def test_a_sample_of_the_models_own_test_data_can_be_picked(server, browser, trained_model_dir):
    from selenium.webdriver.common.by import By

    browser.get(f"http://127.0.0.1:{server.port}/")
    button = browser.find_element(By.CSS_SELECTOR, '#samples button[data-sample^="01-trouser"]')
    button.click()
    _wait_state(browser, "shown")
    body = (trained_model_dir / "samples" / button.get_attribute("data-sample")).read_bytes()
    status, _, payload = invoke(server.port, body, "image/png")
    assert browser.find_element(By.ID, "prediction").text == json.loads(payload)["predictions"][0]["label"]
